"""ensure_storage: create the object store's bucket if it is missing (docker compose start).

    manage.py ensure_storage

Nothing to do when import files are local (no IMPORT_STORAGE_URL). Safe to run on
every start: an existing bucket is left as it is.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imports import storage


class Command(BaseCommand):
    help = "Create the import files' bucket (IMPORT_STORAGE_URL) if it does not exist."

    def handle(self, *args, **options):
        store = storage.store()
        if not store.object_storage:
            if options["verbosity"]:
                self.stdout.write("Import files are local (no IMPORT_STORAGE_URL): nothing to do.")
            return
        try:
            created = store.ensure_bucket()
        except storage.StoreUnavailable as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"]:
            verb = "Created" if created else "Found"
            self.stdout.write(self.style.SUCCESS(f"{verb} the bucket {store.bucket}."))
