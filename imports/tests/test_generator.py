"""The customers file generator: format, determinism, variants, a round trip through the engine."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from customers.models import Customer
from imports.generator import (
    ABOUT_MAX_CHARS,
    ABOUT_MIN_CHARS,
    DIRTY_KINDS,
    customer_id,
    generate,
    row_is_changed,
    row_is_dirty,
)
from imports.models import ImportStatus
from imports.reader import CsvSource
from imports.tests.helpers import HEADER, counters
from imports.tests.test_engine import assert_adds_up, run_file
from imports.validation import CleanRecord, Validator

ROWS = 2_000
# What the validator says about each kind of dirty row.
DIRTY_REASONS = {
    "invalid email": "is not a valid email address",
    "empty Customer Id": "Customer Id is empty",
    "impossible date": "is not a valid YYYY-MM-DD date",
    "too many fields": "expected 13 fields, found 14",
    "too few fields": "expected 13 fields, found 11",
    "Customer Id too long": "Customer Id is longer than 64 characters",
}


def read_rows(path) -> list[tuple[int, list[str]]]:
    """(physical line where the record starts, fields) for each data row; the header is line 1."""
    with path.open(newline="", encoding="utf-8") as fp:
        reader = csv.reader(fp)
        assert next(reader) == HEADER
        rows = []
        while True:
            line = reader.line_num + 1
            try:
                rows.append((line, next(reader)))
            except StopIteration:
                return rows


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "base.csv"
    return path, generate(path, ROWS, seed=7)


def test_same_seed_same_bytes_other_seed_other_file(tmp_path, base_file):
    path, result = base_file
    again = generate(tmp_path / "again.csv", ROWS, seed=7)
    assert again == result
    assert (tmp_path / "again.csv").read_bytes() == path.read_bytes()
    other = generate(tmp_path / "other.csv", ROWS, seed=8)
    assert (tmp_path / "other.csv").read_bytes() != path.read_bytes()
    assert other.rows == ROWS


def test_format_is_the_samples_with_realistic_values(base_file):
    path, result = base_file
    data = path.read_bytes()
    assert result.bytes == len(data) and result.bad_rows == 0 and result.changed_rows == 0
    assert 900 < len(data) / ROWS < 1200  # about a kilobyte per row
    rows = read_rows(path)
    assert len(rows) == ROWS
    # Byte for byte what csv.writer (QUOTE_MINIMAL, "\n") writes for the same values.
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *(fields for _, fields in rows)])
    assert out.getvalue().encode() == data

    assert [fields[0] for _, fields in rows] == [str(n) for n in range(1, ROWS + 1)]
    ids = [fields[1] for _, fields in rows]
    assert len(set(ids)) == ROWS
    assert all(re.fullmatch(r"[0-9a-fA-F]{15}", cid) for cid in ids)
    assert ids[:3] == [customer_id(n, seed=7) for n in (1, 2, 3)]
    assert any(c.isupper() for c in "".join(ids)) and any(c.islower() for c in "".join(ids))
    for _, fields in rows:
        assert len(fields) == len(HEADER)
        assert ABOUT_MIN_CHARS <= len(fields[12]) <= ABOUT_MAX_CHARS
        assert date.fromisoformat(fields[10]).year in (2020, 2021, 2022, 2023)
        assert fields[11].startswith(("http://", "https://www."))
    abouts = [fields[12] for _, fields in rows]
    assert sum('"' in about for about in abouts) > ROWS / 2
    assert sum("\n" in about for about in abouts) > ROWS / 20
    assert sum("," in fields[4] for _, fields in rows) > ROWS / 10  # "Smith, Jones and Lee"
    assert len({fields[5] for _, fields in rows}) > 500  # cities
    # Records span several physical lines when About Customer holds a newline.
    assert rows[-1][0] > ROWS + 1


def test_every_generated_row_passes_the_importers_validation(base_file):
    path, _ = base_file
    with path.open("rb") as fp:
        source = CsvSource(fp, max_row_bytes=1024 * 1024)
        header = source.read_header()
        validate = Validator(header)
        checked = [validate(r) for r in source.records(header.data_offset, header.data_line)]
    assert header.warnings == []
    assert len(checked) == ROWS
    assert all(isinstance(record, CleanRecord) for record in checked)


def test_change_percent_changes_city_and_about_of_exactly_the_selected_rows(tmp_path, base_file):
    path, _ = base_file
    result = generate(tmp_path / "changed.csv", ROWS, seed=7, change_percent=10)
    assert result.changed_rows == ROWS // 10
    base, changed = read_rows(path), read_rows(tmp_path / "changed.csv")
    assert [f[1] for _, f in changed] == [f[1] for _, f in base]  # same ids, same order
    differing = set()
    for (_, old), (_, new) in zip(base, changed, strict=True):
        index = int(old[0])
        if old != new:
            differing.add(index)
            assert [i for i in range(13) if old[i] != new[i]] == [5, 12]  # City, About
        assert (old != new) == row_is_changed(index, 10)
    assert len(differing) == ROWS // 10
    # Spread through the file, not bunched at the start.
    assert min(differing) <= 10 and max(differing) > ROWS - 10


def test_dirty_rows_differ_only_where_selected_and_variants_stay_aligned(tmp_path):
    plain = generate(tmp_path / "plain.csv", 600, seed=3, change_percent=10)
    dirty = generate(tmp_path / "dirty.csv", 600, seed=3, change_percent=10, dirty_percent=5)
    assert plain.bad_rows == 0 and dirty.bad_rows == 30 and dirty.changed_rows == 60
    a, b = read_rows(tmp_path / "plain.csv"), read_rows(tmp_path / "dirty.csv")
    assert len(a) == len(b) == 600
    for (_, good), (_, bad) in zip(a, b, strict=True):
        assert (good != bad) == row_is_dirty(int(good[0]), 5)


@pytest.mark.django_db
def test_dirty_rows_are_exactly_the_rejected_rows(tmp_path):
    path = tmp_path / "dirty.csv"
    result = generate(path, ROWS, seed=11, dirty_percent=3)
    assert result.bad_rows == ROWS * 3 // 100
    lines = {int(f[0]): line for line, f in read_rows(path) if f and f[0].isdigit()}
    dirty = [n for n in range(1, ROWS + 1) if row_is_dirty(n, 3)]
    assert len(dirty) == result.bad_rows

    state = run_file(path)
    assert state.status == ImportStatus.COMPLETED
    assert_adds_up(state)
    assert state.rows_processed == ROWS
    assert state.rows_rejected == result.bad_rows
    assert state.rows_created == ROWS - result.bad_rows
    rejections = list(state.rejections.order_by("line_number").values_list("line_number", "reason"))
    assert [line for line, _ in rejections] == [lines[n] for n in dirty]
    for k, (_, reason) in enumerate(rejections):
        assert DIRTY_REASONS[DIRTY_KINDS[k % len(DIRTY_KINDS)]] in reason


@pytest.mark.django_db
def test_round_trip_through_the_engine(tmp_path):
    path = tmp_path / "customers.csv"
    generate(path, ROWS, seed=5)
    first = run_file(path, batch_size=500)
    assert first.status == ImportStatus.COMPLETED
    assert counters(first) == {
        "rows_processed": ROWS,
        "rows_created": ROWS,
        "rows_updated": 0,
        "rows_unchanged": 0,
        "rows_skipped_manual": 0,
        "rows_rejected": 0,
    }
    sample = Customer.objects.get(customer_id=customer_id(1234, seed=5))
    assert 800 <= len(sample.about) <= 1000 and sample.subscription_date is not None

    again = run_file(path, batch_size=500)
    assert (again.rows_unchanged, again.rows_created, again.rows_updated) == (ROWS, 0, 0)

    changed = tmp_path / "customers-c10.csv"
    generate(changed, ROWS, seed=5, change_percent=10)
    third = run_file(changed, batch_size=500)
    assert (third.rows_updated, third.rows_unchanged, third.rows_created) == (200, 1800, 0)
    assert Customer.objects.count() == ROWS


@pytest.mark.django_db
def test_a_messy_file_imports_with_duplicates_newlines_and_rejections(tmp_path):
    path = tmp_path / "messy.csv"
    result = generate(path, ROWS, seed=9, dirty_percent=2, messy=True)
    assert result.bad_rows == ROWS // 50 and result.duplicate_rows > 0
    with path.open(newline="", encoding="utf-8") as fp:
        records = list(csv.reader(fp))[1:]
    assert sum("\n" in record[-1] for record in records) >= ROWS // 40  # quoted line breaks
    state = run_file(path, batch_size=300)
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_processed == ROWS and state.rows_rejected == result.bad_rows
    assert state.rows_created == ROWS - result.bad_rows - result.duplicate_rows
    assert state.rows_updated == result.duplicate_rows  # the later row wins
    assert Customer.objects.count() == state.rows_created
    assert Customer.objects.filter(about__contains='\n"Noted," she wrote.\n').exists()


# --- The command ------------------------------------------------------------------------
def test_command_writes_the_file_and_reports(tmp_path):
    path = tmp_path / "deep" / "folder" / "c.csv"
    out = io.StringIO()
    call_command(
        "generate_customers", str(path), "--rows", "50", "--dirty-percent", "10", stdout=out
    )
    assert path.read_bytes() == _generated(tmp_path / "same.csv", 50, dirty_percent=10)
    assert re.search(
        r"Wrote 50 rows \(5 bad\) to .*c\.csv: [\d,]+ bytes in [\d.]+ s", out.getvalue()
    )


def test_command_dirty_flag_writes_a_messy_file(tmp_path):
    out = io.StringIO()
    call_command(
        "generate_customers", str(tmp_path / "m.csv"), "--rows", "500", "--dirty", stdout=out
    )
    assert (tmp_path / "m.csv").read_bytes() == _generated(
        tmp_path / "same.csv", 500, dirty_percent=2, messy=True
    )
    assert re.search(r"Wrote 500 rows \(10 bad, \d+ duplicate ids\)", out.getvalue())


def test_command_quiet_and_verbosity_zero_print_nothing(tmp_path):
    for n, flags in enumerate((["--quiet"], ["--verbosity", "0"])):
        out = io.StringIO()
        call_command(
            "generate_customers", str(tmp_path / f"{n}.csv"), "--rows", "3", *flags, stdout=out
        )
        assert out.getvalue() == ""


def test_command_refuses_to_overwrite_a_file_unless_forced(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("precious\n")
    with pytest.raises(CommandError, match="already exists; use --force"):
        call_command("generate_customers", str(path), "--rows", "5")
    assert path.read_text() == "precious\n"
    call_command(
        "generate_customers", str(path), "--rows", "5", "--seed", "9", "--force", "--quiet"
    )
    assert path.read_bytes() == _generated(tmp_path / "same.csv", 5, seed=9)
    empty = tmp_path / "empty.csv"
    empty.touch()  # an empty file is not worth protecting
    call_command("generate_customers", str(empty), "--rows", "1", "--quiet")
    assert empty.stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rows", "0"], "--rows must be at least 1"),
        (["--rows", "-5"], "--rows must be at least 1"),
        (["--rows", "5", "--change-percent", "101"], "--change-percent must be between 0 and 100"),
        (["--rows", "5", "--dirty-percent", "-1"], "--dirty-percent must be between 0 and 100"),
    ],
)
def test_command_rejects_bad_arguments(tmp_path, args, message):
    path = tmp_path / "c.csv"
    with pytest.raises(CommandError, match=message):
        call_command("generate_customers", str(path), *args)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_command_refuses_a_folder(tmp_path):
    with pytest.raises(CommandError, match="is a folder"):
        call_command("generate_customers", str(tmp_path), "--rows", "1")


def _generated(path, rows, **kwargs) -> bytes:
    generate(path, rows, **kwargs)
    return path.read_bytes()
