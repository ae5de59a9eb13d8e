"""undo_import: undo an import in the foreground, or queue its undo for the worker.

    manage.py undo_import ID [--batch-size N] [--queue]
    manage.py undo_import --purge-expired

Customers the import created are deleted, the ones it updated get back their
values from before it; customers changed since are left alone and listed (see
imports/undo.py). Like an import, the undo commits one batch at a time with its
checkpoint: killed, running the same command again continues it. SIGTERM or
Ctrl-C finishes the batch in flight and leaves the undo cancelled; the same
command resumes it.
"""

from __future__ import annotations

import signal
import sys
import threading

from django.core.management.base import BaseCommand, CommandError

from customerpanel.errors import ApplicationError
from imports import leases
from imports.models import ImportState, ImportUndo, UndoStatus
from imports.undo import (
    UndoLeaseLost,
    run_undo,
    undo_claim,
    undo_purge_expired,
    undo_release,
    undo_request,
)


class Command(BaseCommand):
    help = "Undo an import: delete the customers it created, restore the ones it updated."

    def add_arguments(self, parser):
        parser.add_argument("import_id", nargs="?", type=int, help="The import to undo.")
        parser.add_argument("--batch-size", type=int, help="Customers per committed batch.")
        parser.add_argument(
            "--queue", action="store_true", help="Leave the undo to the import worker."
        )
        parser.add_argument(
            "--purge-expired",
            action="store_true",
            help="Delete the undo data of imports older than IMPORT_UNDO_KEEP_DAYS.",
        )

    def handle(self, *args, **options):
        if options["purge_expired"]:
            purged = undo_purge_expired()
            if options["verbosity"]:
                self.stdout.write(f"Undo data deleted for {purged} import(s).")
            return
        if options["import_id"] is None:
            raise CommandError("Give the id of the import to undo, or --purge-expired.")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        state = ImportState.objects.filter(pk=options["import_id"]).first()
        if state is None:
            raise CommandError(f"There is no import #{options['import_id']}.")
        job = ImportUndo.objects.filter(import_state=state).first()
        try:
            if job is None or job.is_resumable:
                job = undo_request(state, batch_size=options["batch_size"])
            elif job.status == UndoStatus.COMPLETED:
                raise CommandError(f"Import #{state.pk} is already undone.")
            if options["batch_size"] and job.batch_size != options["batch_size"]:
                ImportUndo.objects.filter(pk=job.pk).update(batch_size=options["batch_size"])
                job.batch_size = options["batch_size"]
            if options["queue"]:
                self.stdout.write(f"Undo of import #{state.pk} queued for the import worker.")
                return
            job, lease = undo_claim(job, leases.worker_identity())
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if options["verbosity"] and job.rows_checked:
            self.stdout.write(f"Resuming the undo of import #{state.pk} at {job.percent:.1f}%.")
        try:
            job = run_undo(job, lease, should_stop=stop.is_set)
        except UndoLeaseLost:
            job.refresh_from_db()
            raise CommandError(f"The undo was {job.status} by someone else; stopped.") from None
        if job.status == UndoStatus.RUNNING:
            undo_release(job, lease, status=UndoStatus.CANCELLED)
            self.stdout.write(
                self.style.WARNING(
                    f"Undo of import #{state.pk} interrupted at {job.percent:.1f}%; run the "
                    "same command again to resume."
                )
            )
            sys.exit(3)
        if options["verbosity"]:
            self.stdout.write(self.style.SUCCESS(summary(job)))


def summary(job: ImportUndo) -> str:
    return (
        f"Import #{job.import_state_id} undone: {job.rows_deleted:,} created customers deleted, "
        f"{job.rows_restored:,} updated customers restored, {job.rows_kept:,} changed since "
        "and left as they are."
    )
