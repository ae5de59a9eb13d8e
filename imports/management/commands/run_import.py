"""run_import: import one CSV file in the foreground, or run the import worker.

    manage.py run_import PATH [--batch-size N] [--overwrite-manual] [--restart] [--queue]
                              [--map "Header=Field" ...]
                              [--delimiter D] [--encoding E] [--dry-run]
    manage.py run_import --worker [--poll SECONDS] [--once]

Both commit one batch at a time together with its checkpoint (see
imports/engine.py), so a killed run loses nothing: running the same command on
the same file resumes where the last committed batch ended, and a worker takes
over an import whose worker died. A foreground run refused because another
import is running leaves nothing behind; `--queue` hands the file to the
worker instead of running it here. The file's delimiter, encoding and
compression are detected (imports.dialect); `--delimiter` and `--encoding`
set them instead.

Columns are matched to fields by their header names (see imports.columns);
`--map "Mail=Email"` chooses the field of a column whose name does not match,
or `--map "Notes=ignore"` leaves one out. The mapping is checked against the
file's header before anything is written, stored on the import, and used by
every resume of it.
worker instead of running it here. `--dry-run` reads, checks and compares the
whole file and writes no customer: the summary gives the counters the import
would produce and the error report (with `--queue`, the worker runs the dry run
and its page shows them). Running it again resumes an unfinished dry run; a dry
run and an import of the same file never resume each other.

An import that pauses itself (most of its first rows rejected, see
imports/engine.py) exits with code 3 like an interrupted one: look at the error
report, then run the same command again to go on anyway, or fix the file and
use --restart.

Stopping: SIGTERM or Ctrl-C finishes the batch in flight; a second one stops
at once (the batch in flight rolls back). Either way a foreground import is
left cancelled, to be resumed by running the same command again: a person's
stop is never taken over by the worker, only a crash is. A worker hands its
import back to the queue. A lost database connection is retried with a fresh
connection, resuming from the checkpoint.

The worker also runs the customers page's background exports, in a thread of its
own with its own database connection (customers/exports.py), so an export never
waits behind a long import; a stop hands the running export back to the queue.
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

from customerpanel.errors import ApplicationError
from customers.exports import export_worker
from customers.models import CustomerExport
from imports import crashpoints, leases, mappings, resumable, services, undo
from imports.columns import HeaderError
from imports.dialect import ENCODINGS, detect, parse_delimiter, parse_encoding
from imports.engine import LeaseLost, run_import
from imports.management.commands.undo_import import summary as undo_summary
from imports.models import FailureKind, ImportState, ImportStatus, ImportUndo, UndoStatus
from imports.reader import FatalImportError
from imports.workers import Heartbeat

RETRY_FOR_SECONDS = 120
EXPORT_STOP_SECONDS = 30  # for the export thread to commit its chunk and hand the export back
PURGE_EVERY_SECONDS = 3600
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
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="HEADER=FIELD",
            help='The field for a column of the file, by its CSV label or "ignore" '
            '(e.g. --map "Mail=Email"); repeat for more columns.',
        )
        parser.add_argument(
            "--delimiter",
            help='Delimiter instead of the detected one: comma, semicolon, tab, pipe, or "\\t".',
        )
        parser.add_argument(
            "--encoding",
            help=f"Text encoding instead of the detected one: {', '.join(ENCODINGS)}.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Read, check and compare the whole file; write no customer.",
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
            if options["map"]:
                raise CommandError("--map is for importing a PATH, not for the worker.")
            if options["dry_run"]:
                raise CommandError(
                    "--dry-run is for one file (PATH); the worker runs each import as queued."
                )
            try:
                return self.run_worker(poll=options["poll"], once=options["once"])
            except StopNow:
                # A worker's stop is not a decision about the import: back to the queue.
                self._release_own(status=ImportStatus.QUEUED)
                self._stop_heartbeat()
                self.stdout.write("Import worker stopped.")
                return None
        if not options["path"]:
            raise CommandError("Give the CSV file to import, or --worker.")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            delimiter = options["delimiter"] and parse_delimiter(options["delimiter"])
            encoding = options["encoding"] and parse_encoding(options["encoding"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            return self.run_foreground(
                Path(options["path"]),
                batch_size=options["batch_size"],
                overwrite_manual=options["overwrite_manual"],
                restart=options["restart"],
                queue=options["queue"],
                column_mapping=self._column_mapping(
                    Path(options["path"]), options["map"], delimiter, encoding
                ),
                delimiter=delimiter or None,
                encoding=encoding or None,
                dry_run=options["dry_run"],
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
    @staticmethod
    def _column_mapping(
        path: Path, overrides: list[str], delimiter: str | None, encoding: str | None
    ) -> list[str] | None:
        """The file's proposed column mapping with the --map choices; None without --map."""
        if not overrides:
            return None
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            dialect = detect(path, delimiter=delimiter or None, encoding=encoding or None).dialect
            names = mappings.read_header_names(path, dialect)
            return mappings.mapping_from_overrides(names, overrides)
        except (HeaderError, FatalImportError) as exc:
            raise CommandError(f"{path.name}: {exc}") from None

    def run_foreground(
        self,
        path: Path,
        *,
        batch_size,
        overwrite_manual,
        restart,
        queue,
        column_mapping,
        delimiter,
        encoding,
        dry_run=False,
    ):
        try:
            state, resumed = services.import_for_command(
                path,
                restart=restart,
                overwrite_manual=overwrite_manual,
                batch_size=batch_size,
                worker=None if queue else self.worker,
                column_mapping=column_mapping,
                delimiter=delimiter,
                encoding=encoding,
                dry_run=dry_run,
            )
            if queue and state.is_resumable:
                services.import_resume(state)
        except services.ImportRefused as exc:
            raise CommandError(exc.message) from None
        kind = _kind(state)
        if queue:
            if self.verbosity:
                self.stdout.write(
                    f"{kind} #{state.pk} of {state.original_name} is {state.status}; the import "
                    f"worker runs it ({self._page(state)})."
                )
            return None
        if self.verbosity:
            if resumed:
                self.stdout.write(
                    f"Resuming {kind.lower()} #{state.pk} of {state.original_name} at "
                    f"{state.percent:.1f}% (line {state.lines_processed:,})."
                )
            else:
                self.stdout.write(
                    f"{kind} #{state.pk}: {state.original_name} ({_size(state.file_size)}; "
                    f"{state.dialect})."
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
            if state.dry_run:
                self.stdout.write("Dry run — no customer was written. The import would give:")
            self.stdout.write(_counts(state))
            self.stdout.write(_columns(state))
            for warning in state.warnings:
                self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
            if state.rows_rejected:
                self.stdout.write(
                    f"Rejected rows and reasons: {self._page(state)} (error report), or "
                    f"manage.py import_errors {state.pk} -o import-{state.pk}-errors.csv"
                )
        kind = _kind(state)
        if state.status == ImportStatus.COMPLETED:
            if self.verbosity:
                self.stdout.write(
                    self.style.SUCCESS(f"{kind} #{state.pk} completed: {self._page(state)}")
                )
        elif state.status == ImportStatus.CANCELLED:
            self.stdout.write(
                self.style.WARNING(
                    f"{kind} #{state.pk} interrupted at {state.percent:.1f}%; run the same "
                    "command again to resume."
                )
            )
            sys.exit(3)
        elif state.status == ImportStatus.PAUSED:
            self.stdout.write(
                self.style.WARNING(
                    f"Import #{state.pk} {state.error[:1].lower()}{state.error[1:]} Run the same "
                    "command again to go on anyway, or fix the file and use --restart."
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
        self.purge_at = 0.0
        if self.verbosity:
            self.stdout.write(f"Import worker {self.worker} started; waiting for imports.")
        self.heartbeat = None
        exporter = threading.Thread(
            target=export_worker,
            name="exports",
            args=(self.worker,),
            kwargs={
                "stop": self.stop,
                "poll": poll,
                "after_chunk": crashpoints.batch_pause,
                "crashpoint": crashpoints.crashpoint,
            },
            daemon=True,  # a second signal must not wait for it
        )
        exporter.start()
        try:
            self._worker_loop(poll=poll, once=once)
        finally:
            self.stop.set()
            exporter.join(timeout=EXPORT_STOP_SECONDS)

    def _worker_loop(self, *, poll: float, once: bool):
        cleaned_at = 0.0
        while not self.stop.is_set():
            try:
                close_old_connections()
                if time.monotonic() - cleaned_at > CLEANUP_EVERY_SECONDS:
                    self._cleanup_uploads()
                    cleaned_at = time.monotonic()
                if self.heartbeat is None:
                    self.heartbeat = Heartbeat(self.worker)  # shown on the imports page
                else:
                    self.heartbeat.beat()
                claimed = services.import_claim_next(self.worker)
                if claimed is None:
                    services.import_rebuild_orphaned_indexes()
            except DatabaseError as exc:
                self.stderr.write(f"Database error, retrying: {str(exc).splitlines()[0]}")
                self._reconnect()
                self.stop.wait(poll)
                continue
            if claimed is None:
                # The same worker runs undos (imports.undo), one job at a time either way.
                undo_claimed = self._next_undo()
                if undo_claimed is not None:
                    self._undo_on(*undo_claimed)
                    continue
                if (
                    once
                    and not ImportState.objects.active().exists()
                    and not ImportUndo.objects.active().exists()
                    and not CustomerExport.objects.active().exists()
                ):
                    break
                self.stop.wait(poll)
                continue
            self._work_on(*claimed)
        self._stop_heartbeat()
        if self.verbosity:
            self.stdout.write("Import worker stopped.")

    def _next_undo(self):
        try:
            if time.monotonic() >= self.purge_at:  # expired undo data, now and then
                self.purge_at = time.monotonic() + PURGE_EVERY_SECONDS
                undo.undo_purge_expired()
            return undo.undo_claim_next(self.worker)
        except DatabaseError as exc:
            self.stderr.write(f"Database error, retrying: {str(exc).splitlines()[0]}")
            self._reconnect()
            return None

    def _undo_on(self, job: ImportUndo, lease: int):
        if self.verbosity:
            self.stdout.write(f"Undoing import #{job.import_state_id} from {job.percent:.1f}%.")
        try:
            job = undo.run_undo(job, lease, should_stop=self.stop.is_set)
        except undo.UndoLeaseLost as exc:
            self.stdout.write(f"Stopped: {exc}.")
            return
        except DatabaseError as exc:
            self.stderr.write(f"Database error during an undo: {str(exc).splitlines()[0]}")
            self._reconnect()
            return
        except Exception as exc:  # noqa: BLE001 - one broken undo must not stop the worker
            self.stderr.write(f"Undo of import #{job.import_state_id} failed: {exc!r}")
            undo.undo_fail(job, lease, f"Internal error: {type(exc).__name__}: {exc}")
            return
        if job.status == UndoStatus.RUNNING:  # SIGTERM: back to the queue
            undo.undo_release(job, lease, status=UndoStatus.QUEUED)
        elif self.verbosity:
            self.stdout.write(undo_summary(job))

    def _cleanup_uploads(self) -> None:
        """Expired uploads and the files of finished imports (see imports.resumable)."""
        try:
            done = resumable.uploads_cleanup()
        except ApplicationError as exc:  # the object store is down: next time
            self.stderr.write(f"Uploads not cleaned up: {exc}")
            return
        if self.verbosity and (done.expired or done.imported):
            self.stdout.write(
                f"Deleted {done.expired} expired uploads and {done.imported} imported files."
            )

    def _stop_heartbeat(self):
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None:
            with contextlib.suppress(DatabaseError):  # then it shows as lost: true enough
                heartbeat.stop()

    def _work_on(self, state: ImportState, lease: int):
        if self.verbosity:
            self.stdout.write(
                f"Running import #{state.pk} ({state.original_name}) from {state.percent:.1f}%."
            )
        progress = _Progress(self.stdout, self.verbosity, interactive=False)

        def on_progress(state: ImportState) -> None:
            progress.update(state)
            self.heartbeat.beat(state if state.status == ImportStatus.RUNNING else None)

        try:
            self.heartbeat.beat(state)
            state = run_import(state, lease, should_stop=self.stop.is_set, on_progress=on_progress)
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


def _kind(state: ImportState) -> str:
    return "Dry run" if state.dry_run else "Import"


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
        why = "" if state.column_mapping else " (unknown)"  # mapped: a person's choice
        parts.append(f"ignored{why}: {', '.join(state.columns_ignored)}")
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
