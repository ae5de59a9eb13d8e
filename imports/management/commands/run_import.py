"""run_import: import one CSV file in the foreground, or run the import worker.

    manage.py run_import PATH [--batch-size N] [--overwrite-manual] [--restart] [--queue]
    manage.py run_import --worker [--poll SECONDS] [--once]

Both commit one batch at a time together with its checkpoint (see
imports/engine.py), so a killed run loses nothing: running the same command on
the same file resumes where the last committed batch ended, and a worker takes
over an import whose worker died. A foreground run refused because another
import is running leaves nothing behind; `--queue` hands the file to the
worker instead of running it here.

Stopping: SIGTERM or Ctrl-C finishes the batch in flight; a second one stops
at once (the batch in flight rolls back). Either way a foreground import is
left cancelled, to be resumed by running the same command again: a person's
stop is never taken over by the worker, only a crash is. A worker hands its
import back to the queue. A lost database connection is retried with a fresh
connection, resuming from the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection
from django.urls import reverse

from imports import leases, resumable, services
from imports.engine import LeaseLost, run_import
from imports.models import FailureKind, ImportState, ImportStatus

RETRY_FOR_SECONDS = 120
CLEANUP_EVERY_SECONDS = 300  # expired uploads and imported files (imports.resumable)


class StopNow(BaseException):
    """Raised by a second SIGINT/SIGTERM wherever the main thread is."""


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Command(BaseCommand):
    help = "Import a customers CSV file (resumable), or run the import worker with --worker."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="CSV file to import in the foreground.")
        parser.add_argument("--worker", action="store_true", help="Run queued imports forever.")
        parser.add_argument("--batch-size", type=int, help="Rows per committed batch.")
        parser.add_argument(
            "--overwrite-manual",
            action="store_true",
            help="Import over customers edited by hand (and clear their manual-edit stamp).",
        )
        parser.add_argument(
            "--restart", action="store_true", help="Start over instead of resuming."
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Queue the file for the import worker instead of importing it here.",
        )
        parser.add_argument("--poll", type=float, default=1.0, help="Worker: idle poll interval.")
        parser.add_argument(
            "--once", action="store_true", help="Worker: exit when the queue is empty."
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        self.stop = threading.Event()
        self.worker = services.worker_identity()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        if options["worker"]:
            if options["path"]:
                raise CommandError("Give either a PATH or --worker, not both.")
            try:
                return self.run_worker(poll=options["poll"], once=options["once"])
            except StopNow:
                # A worker's stop is not a decision about the import: back to the queue.
                self._release_own(status=ImportStatus.QUEUED)
                self.stdout.write("Import worker stopped.")
                return None
        if not options["path"]:
            raise CommandError("Give the CSV file to import, or --worker.")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            return self.run_foreground(
                Path(options["path"]),
                batch_size=options["batch_size"],
                overwrite_manual=options["overwrite_manual"],
                restart=options["restart"],
                queue=options["queue"],
            )
        except StopNow:  # before or after the import loop: whatever we hold is cancelled
            self._release_own(status=ImportStatus.CANCELLED)
            raise CommandError("Stopped.") from None

    def _on_signal(self, signum, frame):
        if self.stop.is_set():  # a second signal: stop now; the checkpoint still holds
            for each in (signal.SIGTERM, signal.SIGINT):
                signal.signal(each, signal.SIG_IGN)  # nothing may interrupt the clean-up
            raise StopNow
        self.stop.set()
        self.stderr.write("\nStopping after the current batch (Ctrl-C again to stop now)...")

    def _release_own(self, *, status: str) -> None:
        """After a second signal: leave our running import `status`, never `running`.

        The batch in flight rolled back with its transaction. Found by worker
        identity (host:pid), so it works wherever the signal landed, even
        between a claim's commit and the first batch.
        """
        for attempt in (1, 2):
            try:
                for state in ImportState.objects.running().filter(worker=self.worker):
                    with contextlib.suppress(LeaseLost):  # cancelled or taken over meanwhile
                        leases.release(state, state.lease, status=status)
                return
            except Exception:
                # The signal may have cut a database call short and left the connection
                # unusable: use a fresh one (the old session's transaction dies with it).
                self._reconnect(wait=0)
                if attempt == 2:
                    raise

    # --- foreground -------------------------------------------------------------------
    def run_foreground(self, path: Path, *, batch_size, overwrite_manual, restart, queue):
        try:
            state, resumed = services.import_for_command(
                path,
                restart=restart,
                overwrite_manual=overwrite_manual,
                batch_size=batch_size,
                worker=None if queue else self.worker,
            )
            if queue and state.is_resumable:
                services.import_resume(state)
        except services.ImportRefused as exc:
            raise CommandError(exc.message) from None
        if queue:
            if self.verbosity:
                self.stdout.write(
                    f"Import #{state.pk} of {state.original_name} is {state.status}; the import "
                    f"worker runs it ({self._page(state)})."
                )
            return None
        if self.verbosity:
            if resumed:
                self.stdout.write(
                    f"Resuming import #{state.pk} of {state.original_name} at "
                    f"{state.percent:.1f}% (line {state.lines_processed:,})."
                )
            else:
                self.stdout.write(
                    f"Import #{state.pk}: {state.original_name} ({_size(state.file_size)})."
                )
        self.progress = _Progress(self.stdout, self.verbosity)
        deadline = None
        lease = state.lease  # claimed by import_for_command
        while True:
            try:
                if state.status != ImportStatus.RUNNING or state.worker != self.worker:
                    state, lease = services.import_claim(state, self.worker)
                state = run_import(
                    state, lease, should_stop=self.stop.is_set, on_progress=self.progress.update
                )
                if state.status == ImportStatus.RUNNING:  # stopped by a signal
                    leases.release(state, lease, status=ImportStatus.CANCELLED)
                break
            except StopNow:
                self._release_own(status=ImportStatus.CANCELLED)
                state.refresh_from_db()
                break
            except services.ImportRefused as exc:
                raise CommandError(exc.message) from None
            except LeaseLost:
                state.refresh_from_db()
                raise CommandError(
                    f"Import #{state.pk} was {state.status} by someone else; stopped."
                ) from None
            except DatabaseError as exc:
                # Lost connection or database restart: reconnect and resume from the checkpoint.
                deadline = deadline or time.monotonic() + RETRY_FOR_SECONDS
                if time.monotonic() > deadline or self.stop.is_set():
                    raise CommandError(f"Database unavailable: {exc}".splitlines()[0]) from None
                self.stderr.write(f"Database error, retrying: {str(exc).splitlines()[0]}")
                self._reconnect()
                state = ImportState(pk=state.pk)
        self.progress.finish(state)
        return self._summary(state)

    @staticmethod
    def _page(state: ImportState) -> str:
        return reverse("imports:detail", args=[state.pk])

    def _summary(self, state: ImportState):
        if self.verbosity:
            self.stdout.write(_counts(state))
            self.stdout.write(_columns(state))
            for warning in state.warnings:
                self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
            if state.rows_rejected:
                self.stdout.write(
                    f"Rejected rows and reasons: {self._page(state)} (error report), or "
                    f"manage.py import_errors {state.pk} -o import-{state.pk}-errors.csv"
                )
        if state.status == ImportStatus.COMPLETED:
            if self.verbosity:
                self.stdout.write(
                    self.style.SUCCESS(f"Import #{state.pk} completed: {self._page(state)}")
                )
        elif state.status == ImportStatus.CANCELLED:
            self.stdout.write(
                self.style.WARNING(
                    f"Import #{state.pk} interrupted at {state.percent:.1f}%; run the same command "
                    "again to resume."
                )
            )
            sys.exit(3)
        elif state.error_kind == FailureKind.FILE:
            raise CommandError(
                f"{state.error} Fix the file, then run the command again: "
                "it imports the file from the start."
            )
        else:
            raise CommandError(state.error or f"Import #{state.pk} {state.status}.")

    def _reconnect(self, wait: float = 1):
        with contextlib.suppress(Exception):
            connection.close()
        time.sleep(wait)

    # --- worker ---------------------------------------------------------------------------
    def run_worker(self, *, poll: float, once: bool):
        if self.verbosity:
            self.stdout.write(f"Import worker {self.worker} started; waiting for imports.")
        cleaned_at = 0.0
        while not self.stop.is_set():
            try:
                close_old_connections()
                if time.monotonic() - cleaned_at > CLEANUP_EVERY_SECONDS:
                    self._cleanup_uploads()
                    cleaned_at = time.monotonic()
                claimed = services.import_claim_next(self.worker)
            except DatabaseError as exc:
                self.stderr.write(f"Database error, retrying: {str(exc).splitlines()[0]}")
                self._reconnect()
                self.stop.wait(poll)
                continue
            if claimed is None:
                if once and not ImportState.objects.active().exists():
                    break
                self.stop.wait(poll)
                continue
            self._work_on(*claimed)
        if self.verbosity:
            self.stdout.write("Import worker stopped.")

    def _cleanup_uploads(self) -> None:
        """Expired uploads and the files of finished imports (see imports.resumable)."""
        done = resumable.uploads_cleanup()
        if self.verbosity and (done.expired or done.imported):
            self.stdout.write(
                f"Deleted {done.expired} expired uploads and {done.imported} imported files."
            )

    def _work_on(self, state: ImportState, lease: int):
        if self.verbosity:
            self.stdout.write(
                f"Running import #{state.pk} ({state.original_name}) from {state.percent:.1f}%."
            )
        progress = _Progress(self.stdout, self.verbosity, interactive=False)
        try:
            state = run_import(
                state, lease, should_stop=self.stop.is_set, on_progress=progress.update
            )
        except LeaseLost as exc:
            self.stdout.write(f"Stopped: {exc}.")
            return
        except DatabaseError as exc:
            # Keep our claim: the next loop re-claims it (same worker) after reconnecting.
            self.stderr.write(
                f"Database error during import #{state.pk}: {str(exc).splitlines()[0]}"
            )
            self._reconnect()
            return
        except Exception as exc:  # noqa: BLE001 - one broken import must not stop the worker
            self.stderr.write(f"Import #{state.pk} failed: {exc!r}")
            message = f"Internal error: {type(exc).__name__}: {exc}"
            leases.fail(state, lease, message, kind=FailureKind.TRANSIENT)
            return
        if state.status == ImportStatus.RUNNING:  # SIGTERM: hand it back to the queue
            leases.release(state, lease, status=ImportStatus.QUEUED)
            self.stdout.write(f"Import #{state.pk} paused at {state.percent:.1f}%; it will resume.")
        elif self.verbosity:
            self.stdout.write(
                f"Import #{state.pk} {state.status}: {_counts(state)}"
                f"{' ' + state.error if state.error else ''}"
            )


def _counts(state: ImportState) -> str:
    """'Rows 10: created 4, updated 2, ..., duplicates in file 1.'"""
    total, *parts = state.counter_items()
    return (
        f"Rows {total['value']:,}: "
        + ", ".join(f"{part['label'].lower()} {part['value']:,}" for part in parts)
        + "."
    )


def _columns(state: ImportState) -> str:
    """Which columns of the file were imported, ignored, and which it lacks."""
    parts = [f"Columns used: {', '.join(state.columns_used) or 'none'}"]
    if state.columns_ignored:
        parts.append(f"ignored (unknown): {', '.join(state.columns_ignored)}")
    if state.columns_absent:
        parts.append(
            f"absent (left unchanged on existing customers): {', '.join(state.columns_absent)}"
        )
    return "; ".join(parts) + "."


class _Progress:
    """A progress bar on a terminal, a line every few seconds otherwise."""

    EVERY_SECONDS = 5.0

    def __init__(self, out, verbosity: int, *, interactive: bool | None = None):
        self.out = out
        self.verbosity = verbosity
        self.interactive = out.isatty() if interactive is None else interactive
        self.last = 0.0

    def update(self, state: ImportState) -> None:
        if not self.verbosity:
            return
        rate = state.rows_per_second
        eta = state.eta_seconds
        text = (
            f"{state.percent:5.1f}%  {state.rows_processed:,} rows"
            + (f"  {rate:,.0f} rows/s" if rate else "")
            + (f"  ETA {eta:,.0f}s" if eta is not None else "")
        )
        if self.interactive:
            filled = int(state.percent / 100 * 30)
            self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}   ", ending="")
            self.out.flush()
        elif time.monotonic() - self.last >= self.EVERY_SECONDS:
            self.last = time.monotonic()
            self.out.write(text)

    def finish(self, state: ImportState) -> None:
        if self.interactive and self.verbosity:
            self.out.write("")
