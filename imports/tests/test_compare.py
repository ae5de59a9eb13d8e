"""The dry run's writer and the review's sample: an import's outcomes, nothing written."""

import pytest
from django.utils import timezone

from customers.models import Customer
from imports import leases, services
from imports.compare import sample_outcomes
from imports.engine import run_import
from imports.models import CustomerStamp, ImportStatus
from imports.reader import CsvSource
from imports.tests.helpers import counters, row, table_checksum, write_csv
from imports.validation import CleanRecord, Validator

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"


def run_file(path, *, dry_run=False, batch_size=2):
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=batch_size
    )
    if dry_run:
        state.dry_run = True
        state.save(update_fields=["dry_run"])
    state, lease = leases.claim(state, WORKER)
    return run_import(state, lease)


def outcome_counters(state):
    return {**counters(state), "rows_duplicate": state.rows_duplicate}


def test_a_dry_run_gives_the_import_s_counters_and_writes_no_customer(tmp_path):
    base = write_csv(tmp_path / "base.csv", [row(2), row(3), row(4)])
    assert run_file(base).status == ImportStatus.COMPLETED
    Customer.objects.filter(customer_id="ID4").update(manually_edited_at=timezone.now())
    rows = [row(1), row(2), row(3, city="Quito"), row(4, city="Oslo"), row(5, email="bad"), row(1)]
    changed = write_csv(tmp_path / "changed.csv", rows)
    before = table_checksum()
    dry = run_file(changed, dry_run=True)
    assert dry.status == ImportStatus.COMPLETED
    assert table_checksum() == before
    assert not Customer.objects.filter(customer_id="ID1").exists()
    dry_counts = outcome_counters(dry)
    # The repeated ID1 is compared with the database (not written by its first row): created.
    assert dry_counts == {
        "rows_processed": 6,
        "rows_created": 2,
        "rows_updated": 1,
        "rows_unchanged": 1,
        "rows_skipped_manual": 1,
        "rows_rejected": 1,
        "rows_duplicate": 1,
    }
    assert dry.rejections.get().line_number == 6
    real = run_file(changed)
    real_counts = outcome_counters(real)
    # The real import writes ID1 first, so its repeat is unchanged: the one difference.
    assert real_counts == {**dry_counts, "rows_created": 1, "rows_unchanged": 2}
    assert CustomerStamp.objects.filter(import_id=real.pk).count() == 4


def test_sample_outcomes_reads_the_database_only(tmp_path):
    run_file(write_csv(tmp_path / "base.csv", [row(2), row(3)]))
    path = write_csv(tmp_path / "new.csv", [row(1), row(2), row(3, city="Quito"), row(1)])
    before = table_checksum()
    with path.open("rb") as fp:
        source = CsvSource(fp, max_row_bytes=100_000)
        header = source.read_header()
        validator = Validator(header)
        records = [validator(r) for r in source.records(header.data_offset, header.data_line)]
    assert all(isinstance(r, CleanRecord) for r in records)
    counts, duplicates = sample_outcomes(
        records, fields=header.imported_fields, overwrite_manual=False
    )
    assert (counts["created"], counts["unchanged"], counts["updated"], duplicates) == (1, 1, 1, 1)
    assert table_checksum() == before
    assert not CustomerStamp.objects.filter(customer_id="ID1").exists()
