"""The import runner: stream a CSV file into customers, one committed batch at a time.

Design, and why:
- A reader thread parses and validates the next batch while the main thread
  writes the current one, so Python's CPU work overlaps the database's. The
  queue between them holds one batch: memory stays flat whatever the file size.
- Each batch commits in ONE transaction together with its checkpoint: the byte
  offset just after its last row, its line number, every counter and the
  heartbeat. Whatever dies (kill -9, lost connection, database restart), the
  checkpoint describes exactly what is in the table, and a resume seeks to that
  offset: no re-reading from row 0, no overlap, nothing counted twice.
- The first statement of every batch transaction re-checks our lease (a
  fencing token bumped on every claim) and locks the import's row. A worker
  whose import was taken over or cancelled cannot commit another batch.
  Every status change goes through `imports.leases`.
- A run starts only on the very file the import was queued with (size, mtime
  and a hash of its ends, see `imports.files`) and reads exactly the bytes
  recorded then: rows appended meanwhile belong to the next import.
- Rows with the same customer id inside one batch are written in rounds (first
  occurrences, then second ones, ...), which gives the same table and counters
  as applying the file row by row, wherever the batch boundaries fall. Every
  row stamps its Customer Id with the import's id (CustomerStamp), so a later
  row with the same id, in this batch or any other, before or after a resume,
  counts as a duplicate in file: the counter is exact and costs no memory.
- A bulk load (the rest of the file will at least double the table) drops the
  customers' secondary indexes after its first batch (on SQLite also the search
  index's triggers) and builds them again at its end, whatever the end: faster
  than keeping them up to date row by row (customers/deferred_indexes.py,
  crash-safe). If the table then holds only this import's rows, the batches go
  straight into it too (`write_batch`): no staging, no upsert, no stamps, each
  batch in a savepoint that an existing id rolls back to the usual path for the
  rest of the run (after stamping this import's rows from `created_by_import`,
  so a duplicate in file is still counted).
- Early-rejection check: once the checkpoint passes the first
  IMPORT_ERROR_THRESHOLD_ROWS rows (a batch ends exactly there), an import
  whose rejected share is above IMPORT_ERROR_THRESHOLD_SHARE pauses itself: a
  wrong column mapping or delimiter rejects nearly every row, and a person
  should look before millions of rejections pile up. The batches committed
  stay (their rows are correct). The check is made once (`threshold_passed`)
  and waived by a resume; a file shorter than that simply completes, and a dry
  run (the place to see every error) never pauses.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from customers.deferred_indexes import (
    defer_indexes,
    indexes_deferred,
    rebuild_deferred_indexes,
)

from . import leases
from .compare import CompareWriter
from .crashpoints import batch_pause, crashpoint
from .files import FileMissing, check_import_file
from .leases import LeaseLost as LeaseLost  # raised through checkpoint(); callers catch it
from .leases import checkpoint
from .models import RECENT_ROWS_KEPT, FailureKind, ImportRejection, ImportState
from .outcomes import DUPLICATE, REJECTED, WRITE_OUTCOMES
from .reader import CsvSource, FatalImportError
from .sources import open_source
from .storage import StoreUnavailable
from .validation import CleanRecord, Rejection, Validator
from .writers import DirectLoad, WriteResult, writer_for

log = logging.getLogger(__name__)

# A batch also ends at this many bytes, so huge rows cannot grow it without bound.
MAX_BATCH_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Chunk:
    clean: list[CleanRecord]
    rejected: list[Rejection]
    end_offset: int
    end_line: int
    stored_offset: int = 0  # progress in the stored file (compressed bytes read for gzip, zip)

    @property
    def rows(self) -> int:
        return len(self.clean) + len(self.rejected)


# --- Reading -------------------------------------------------------------------
def read_chunks(
    source: CsvSource,
    validator: Validator,
    offset: int,
    line: int,
    batch_size: int,
    first_batch_size: int | None = None,
) -> Iterator[Chunk]:
    clean: list[CleanRecord] = []
    rejected: list[Rejection] = []
    start = offset
    item = None
    size = first_batch_size or batch_size

    def chunk() -> Chunk:  # the rows so far, ending after `item`: its checkpoint
        end = item.end_offset
        return Chunk(clean, rejected, end, item.end_line, source.stored_offset(end))

    try:
        for item in source.records(offset, line):
            checked = validator(item)
            if isinstance(checked, CleanRecord):
                clean.append(checked)
            else:
                rejected.append(checked)
            if len(clean) + len(rejected) >= size or item.end_offset - start >= MAX_BATCH_BYTES:
                yield chunk()
                clean, rejected, start, size = [], [], item.end_offset, batch_size
    except FatalImportError:
        # The rows read before the fatal problem are sound: commit them, then fail.
        if clean or rejected:
            yield chunk()
        raise
    if clean or rejected:
        yield chunk()


_DONE = object()


def prefetch(chunks: Iterator[Chunk], stop: threading.Event) -> Iterator[Chunk]:
    """Run `chunks` in a thread, one batch ahead of the consumer."""
    handoff: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


# --- Writing -------------------------------------------------------------------
def split_rounds(records: list[CleanRecord]) -> list[list[CleanRecord]]:
    """Round k holds the k-th occurrence of each customer id, in file order."""
    rounds: list[list[CleanRecord]] = [[]]
    seen: dict[str, int] = {}
    for record in records:
        k = seen.get(record.customer_id, 0)
        seen[record.customer_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(record)
    return rounds


def _recent_rows(
    state: ImportState, clean: list[CleanRecord], outcome: dict[str, str]
) -> list[dict]:
    fresh = []
    for record in reversed(clean[-RECENT_ROWS_KEPT:]):
        values = record.values
        fresh.append(
            {
                "line": record.line,
                "customer_id": values[0],
                "name": f"{values[1]} {values[2]}".strip(),
                "email": values[8],
                "company": values[3],
                "country": values[5],
                "outcome": outcome.get(values[0], ""),
            }
        )
    return (fresh + list(state.recent_rows))[:RECENT_ROWS_KEPT]


def write_batch(
    state: ImportState, lease: int, writer, records: list[CleanRecord], want: set[str]
) -> WriteResult:
    """Write a batch's records, straight into the table while the writer loads directly."""
    rounds = split_rounds(records)
    direct = isinstance(writer, DirectLoad) and writer.direct
    if direct and len(rounds) == 1:
        result = writer.write_direct(records, want=want)
        if result is not None:
            if not state.stamps_deferred:
                checkpoint(state, lease, stamps_deferred=True)
            return result
    if direct:  # an id the table has, or one twice in the batch: the usual path from now on
        writer.direct = False
    if state.stamps_deferred:
        writer.backfill_stamps()
        checkpoint(state, lease, stamps_deferred=False)
    total = WriteResult()
    for round_records in rounds:
        total.add(writer.write(round_records, want=want))
    return total


def commit_chunk(state: ImportState, lease: int, writer, chunk: Chunk) -> None:
    """Write one batch and its checkpoint in one transaction."""
    want = {record.customer_id for record in chunk.clean[-RECENT_ROWS_KEPT:]}
    with transaction.atomic():
        checkpoint(state, lease)
        total = write_batch(state, lease, writer, chunk.clean, want)
        if chunk.rejected:
            ImportRejection.objects.bulk_create(
                [
                    ImportRejection(
                        import_state=state,
                        line_number=r.line,
                        customer_id=r.customer_id[:255],
                        reason=r.reason[:500],
                        raw=r.raw,
                        cells=r.cells,
                    )
                    for r in chunk.rejected
                ]
            )
        if chunk.end_offset < state.bytes_processed:
            raise AssertionError("checkpoint would move backwards")
        added = {outcome.field: total.counts[outcome.name] for outcome in WRITE_OUTCOMES}
        added[REJECTED.field] = len(chunk.rejected)
        added[DUPLICATE.field] = total.duplicates
        checkpoint(
            state,
            lease,
            bytes_processed=chunk.end_offset,
            source_bytes_processed=max(chunk.stored_offset, state.source_bytes_processed),
            lines_processed=chunk.end_line,
            rows_processed=state.rows_processed + chunk.rows,
            **{name: getattr(state, name) + count for name, count in added.items()},
            recent_rows=_recent_rows(state, chunk.clean, total.outcome),
        )
        crashpoint("before_commit")
    crashpoint("after_commit")
    writer.after_commit()
    batch_pause()


# --- Indexes -----------------------------------------------------------------------
def is_bulk_load(state: ImportState, since: tuple[int, int]) -> bool:
    """After this run's first batch: will the rest of the file at least double the table?

    `since` is (bytes, rows) processed when the run started. The rows left are
    estimated from the bytes per row seen so far; the table is counted only up to
    that many rows.
    """
    rows_read = state.rows_processed - since[1]
    # Inside a caller's transaction (a script or a test wrapping the import) nothing commits
    # per batch, and PostgreSQL refuses to build the indexes again before it ends (SQLite
    # would rebuild its search index inside it).
    if rows_read <= 0 or connection.in_atomic_block:
        return False
    bytes_read = max(state.bytes_processed - since[0], 1)
    rows_left = (state.file_size - state.bytes_processed) * rows_read // bytes_read
    if rows_left < max(settings.IMPORT_DEFER_INDEXES_MIN_ROWS, 1):
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM customers_customer LIMIT %s) AS t", [rows_left]
        )
        return cursor.fetchone()[0] < rows_left


def only_rows_of(state: ImportState) -> bool:
    """Whether every customer in the table was created by this import (bounded by a bulk load)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM customers_customer "
            "WHERE created_by_import IS NULL OR created_by_import <> %s)",
            [state.pk],
        )
        return bool(cursor.fetchone()[0])


def choose_indexes(state: ImportState, lease: int, since: tuple[int, int], writer) -> None:
    """Defer the indexes for a bulk load; otherwise rebuild any a dead run left dropped.

    A bulk load into a table of this import's rows alone also writes directly.
    """
    if is_bulk_load(state, since):
        defer_indexes(connection, by=f"import #{state.pk}")
        if isinstance(writer, DirectLoad):  # not a dry run's
            writer.direct = only_rows_of(state)
    else:
        rebuild_indexes(state, lease)


def rebuild_indexes(state: ImportState, lease: int) -> None:
    """Build the deferred indexes, the import's heartbeat going on meanwhile (minutes at 2 M)."""
    if not indexes_deferred(connection):
        return
    with leases.kept_alive(state, lease):
        rebuild_deferred_indexes(connection, builders=settings.IMPORT_INDEX_BUILDERS)


def rebuild_indexes_after_run(state: ImportState, lease: int) -> None:
    try:
        rebuild_indexes(state, lease)
    except DatabaseError as exc:  # connection lost: the next run or worker rebuilds them
        log.warning("import #%s: indexes not rebuilt yet: %s", state.pk, exc)


# --- Running -----------------------------------------------------------------------
def run_import(
    state: ImportState,
    lease: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ImportState], None] = lambda state: None,
) -> ImportState:
    """Run a claimed import from its checkpoint until the end, a stop request or a fatal error.

    Returns the import with its final status: completed, failed (a file
    problem), paused (most of its first rows rejected), or still running when
    `should_stop` asked us to stop (the caller then releases it). Raises
    LeaseLost when it is no longer ours, and database errors (lost
    connection) for the caller to retry.
    """
    try:
        return _run(state, lease, should_stop=should_stop, on_progress=on_progress)
    finally:
        # Cancelled, failed, stopped or completed: deferred indexes never outlive a run.
        rebuild_indexes_after_run(state, lease)


def _run(state: ImportState, lease: int, *, should_stop, on_progress) -> ImportState:
    try:
        check_import_file(state)
        with open_source(state) as source:
            header = source.read_header()
            if state.bytes_processed == 0:
                with transaction.atomic():
                    checkpoint(
                        state,
                        lease,
                        warnings=header.warnings,
                        columns_used=header.used,
                        columns_ignored=header.ignored,
                        columns_absent=header.absent,
                        report_fields=[name for name in header.fields if name],
                        bytes_processed=header.data_offset,
                        lines_processed=header.data_line,
                    )
            # A dry run reads and compares like an import, and writes no customer.
            writer = (CompareWriter if state.dry_run else writer_for)(
                connection,
                overwrite_manual=state.overwrite_manual,
                fields=header.imported_fields,
                import_id=state.pk,
            )
            stop_reading = threading.Event()
            chunks = read_chunks(
                source,
                Validator(header),
                state.bytes_processed,
                state.lines_processed,
                state.batch_size,
                first_batch_size=_rows_before_check(state),
            )
            since = (state.bytes_processed, state.rows_processed)
            for chunk in prefetch(chunks, stop_reading):
                commit_chunk(state, lease, writer, chunk)
                if since is not None:
                    choose_indexes(state, lease, since, writer)
                    since = None
                on_progress(state)
                if _paused_for_rejections(state, lease):
                    on_progress(state)
                    return state
                if should_stop():
                    return state
    except FatalImportError as exc:
        log.warning("import #%s failed: %s", state.pk, exc)
        # A missing file can be put back and resumed; any other file error cannot.
        # So can one read while the object store was down for longer than its retries.
        resumable = isinstance(exc, (FileMissing, StoreUnavailable))
        kind = FailureKind.TRANSIENT if resumable else FailureKind.FILE
        leases.fail(state, lease, str(exc), kind=kind)
        return state
    # Completed means searchable: the indexes are built before the import says so.
    rebuild_indexes(state, lease)
    leases.complete(state, lease)
    on_progress(state)
    return state


# --- Early-rejection check ---------------------------------------------------------
def _checks_rejections(state: ImportState) -> bool:
    return bool(settings.IMPORT_ERROR_THRESHOLD_ROWS) and not (
        state.threshold_passed or state.dry_run
    )


def _rows_before_check(state: ImportState) -> int | None:
    """A first batch that makes a batch end exactly where the check is made, or None."""
    left = settings.IMPORT_ERROR_THRESHOLD_ROWS - state.rows_processed
    if _checks_rejections(state) and left > 0:
        return left % state.batch_size or None
    return None


def _paused_for_rejections(state: ImportState, lease: int) -> bool:
    """Once past the first rows: pause if most were rejected, else never check again."""
    if not _checks_rejections(state) or state.rows_processed < settings.IMPORT_ERROR_THRESHOLD_ROWS:
        return False
    share = state.rows_rejected / state.rows_processed
    if share <= settings.IMPORT_ERROR_THRESHOLD_SHARE:
        leases.pass_threshold(state, lease)
        return False
    leases.pause(
        state,
        lease,
        f"Paused: {state.rows_rejected:,} of the first {state.rows_processed:,} rows were "
        "rejected — the mark of a wrong column mapping or delimiter. Check the error report, "
        "then resume or cancel.",
    )
    return True
