"""cleanup_uploads: delete expired uploads and the files of finished imports.

    manage.py cleanup_uploads

The import worker does the same every few minutes; this is for a cron job or by hand.
What is deleted and when: see `imports.resumable.uploads_cleanup`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from imports.resumable import uploads_cleanup


class Command(BaseCommand):
    help = "Delete expired unfinished uploads and the uploaded files of finished imports."

    def handle(self, *args, **options):
        done = uploads_cleanup()
        if options["verbosity"]:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Deleted {done.expired} expired uploads and {done.imported} files of "
                    "finished imports."
                )
            )
