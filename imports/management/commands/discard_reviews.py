"""discard_reviews: delete imports left in review, with their uploaded files.

    manage.py discard_reviews [--days N]

An upload or a folder pick waits in review until a person starts or discards
it; one nobody came back to keeps its uploaded file on disk. Run this from cron
(or by hand) to discard those older than N days (7 by default).
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from imports import review


class Command(BaseCommand):
    help = "Discard imports left in review for more than N days, and their uploaded files."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=7.0, help="Age in days (default 7).")

    def handle(self, *args, **options):
        if options["days"] < 0:
            raise CommandError("--days cannot be negative.")
        count = review.discard_abandoned(older_than=timedelta(days=options["days"]))
        self.stdout.write(
            self.style.SUCCESS(f"Discarded {count} import{'s' if count != 1 else ''} in review.")
        )
