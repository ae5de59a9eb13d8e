"""The engine end to end on the real database: outcomes, counters, manual edits, resume."""

import pytest
from django.utils import timezone

from customers.models import Customer
from imports import leases, services
from imports.engine import LeaseLost, run_import
from imports.models import ImportRejection, ImportStatus
from imports.tests.corpus import body
from imports.tests.helpers import counters, csv_text, row, table_snapshot, write_csv

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"


def run_file(path, *, batch_size=1000, overwrite_manual=False, restart=True):
    state, _ = services.import_for_command(
        path, restart=restart, overwrite_manual=overwrite_manual, batch_size=batch_size
    )
    state, lease = services.import_claim(state, WORKER)
    return run_import(state, lease)


def assert_adds_up(state):
    c = counters(state)
    assert c["rows_processed"] == sum(v for k, v in c.items() if k != "rows_processed")


def test_each_outcome_and_the_counter_invariant(tmp_path, make_customer):
    make_customer(customer_id="ID2", first_name="Ann", last_name="Lee2", email="ann2@example.com")
    manual = make_customer(customer_id="ID3", city="Quito", manually_edited_at=timezone.now())
    first = write_csv(tmp_path / "a.csv", [row(1), row(2), row(3), row(4, email="bad")])
    state = run_file(first)
    assert state.status == ImportStatus.COMPLETED
    assert counters(state) == {
        "rows_processed": 4,
        "rows_created": 1,
        "rows_updated": 1,
        "rows_unchanged": 0,
        "rows_skipped_manual": 1,
        "rows_rejected": 1,
    }
    manual.refresh_from_db()
    assert manual.city == "Quito"
    assert Customer.objects.get(customer_id="ID2").company == "Acme, Inc"
    assert state.bytes_processed == state.file_size

    again = run_file(first)
    assert counters(again) == {
        "rows_processed": 4,
        "rows_created": 0,
        "rows_updated": 0,
        "rows_unchanged": 2,
        "rows_skipped_manual": 1,
        "rows_rejected": 1,
    }


def test_text_with_backslashes_tabs_and_newlines_is_stored_exactly(tmp_path):
    # PostgreSQL's COPY text format escapes these; the stored values must not change.
    about = 'C:\\new\\table\tcol\nnext line\nand \\N, "quoted"'
    path = write_csv(tmp_path / "a.csv", [row(1, about_customer=about, company="A\\B\tC")])
    state = run_file(path)
    assert counters(state)["rows_created"] == 1
    customer = Customer.objects.get(customer_id="ID1")
    assert customer.about == about
    assert customer.company == "A\\B\tC"
    assert counters(run_file(path))["rows_unchanged"] == 1


def test_reimport_is_idempotent(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(n) for n in range(1, 30)])
    run_file(path, batch_size=7)
    snapshot = table_snapshot()
    again = run_file(path, batch_size=7)
    assert again.rows_unchanged == 29
    assert table_snapshot() == snapshot


def test_overwrite_manual_imports_over_edits_and_clears_the_stamp(tmp_path, make_customer, user):
    make_customer(
        customer_id="ID1", city="Quito", manually_edited_at=timezone.now(), manually_edited_by=user
    )
    state = run_file(write_csv(tmp_path / "a.csv", [row(1)]), overwrite_manual=True)
    assert state.rows_updated == 1
    customer = Customer.objects.get(customer_id="ID1")
    assert customer.city == "Lima"
    assert customer.manually_edited_at is None
    assert customer.manually_edited_by is None


def test_overwrite_manual_clears_the_stamp_even_when_values_are_equal(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(1)])
    run_file(path)
    Customer.objects.update(manually_edited_at=timezone.now())
    state = run_file(path, overwrite_manual=True)
    assert state.rows_updated == 1
    assert Customer.objects.get().manually_edited_at is None


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1000])
def test_duplicates_in_a_file_later_row_wins_whatever_the_batches(tmp_path, batch_size):
    rows = [
        row(1),
        row(2),
        row(1, city="Cusco"),
        row(3),
        row(1, city="Cusco"),
        row(2),
        row(1, city="Arequipa"),
    ]
    state = run_file(write_csv(tmp_path / "dups.csv", rows), batch_size=batch_size)
    assert Customer.objects.get(customer_id="ID1").city == "Arequipa"
    assert counters(state) == {
        # ID1: created, updated, unchanged, updated; ID2: created, unchanged; ID3: created.
        "rows_processed": 7,
        "rows_created": 3,
        "rows_updated": 2,
        "rows_unchanged": 2,
        "rows_skipped_manual": 0,
        "rows_rejected": 0,
    }
    # Rows 3, 5, 6 and 7 repeat an earlier row's id, wherever the batches split them.
    assert state.rows_duplicate == 4


def test_rejections_are_kept_with_line_numbers(tmp_path):
    rows = [row(1), row(2, email="nope"), row(3, subscription_date="2021-02-30"), row(4)]
    state = run_file(write_csv(tmp_path / "a.csv", rows))
    kept = list(
        ImportRejection.objects.filter(import_state=state).values_list(
            "line_number", "customer_id", "reason"
        )
    )
    assert [(line, cid) for line, cid, _ in kept] == [(3, "ID2"), (4, "ID3")]
    assert "email" in kept[0][2] and "YYYY-MM-DD" in kept[1][2]


def test_recent_rows_are_the_last_imported_with_outcomes(tmp_path):
    state = run_file(write_csv(tmp_path / "a.csv", [row(n) for n in range(1, 31)]), batch_size=8)
    assert len(state.recent_rows) == 20
    assert state.recent_rows[0]["customer_id"] == "ID30"
    assert state.recent_rows[0]["outcome"] == "created"
    assert state.recent_rows[-1]["customer_id"] == "ID11"


def test_missing_columns_fail_before_anything_is_written(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("First Name,Last Name\nAnn,Lee\n")
    state = run_file(path)
    assert state.status == ImportStatus.FAILED
    assert "Missing required columns: Customer Id, Email" in state.error
    assert not Customer.objects.exists()


def test_unknown_columns_are_a_warning_on_the_import(tmp_path):
    from imports.tests.helpers import HEADER

    path = write_csv(tmp_path / "a.csv", [[*row(1), "gold"]], header=[*HEADER, "Tier"])
    state = run_file(path)
    assert state.rows_created == 1
    assert state.warnings == ["Ignored unknown column: Tier."]


def test_a_cancelled_import_is_fenced_out_and_resumes_exactly(tmp_path):
    rows = [row(n) for n in range(1, 51)]
    path = write_csv(tmp_path / "a.csv", rows)
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    state, lease = services.import_claim(state, WORKER)
    calls = []

    def cancel_after_two(current):
        calls.append(current.rows_processed)
        if len(calls) == 2:
            services.import_cancel(current)

    with pytest.raises(LeaseLost):
        run_import(state, lease, on_progress=cancel_after_two)
    state.refresh_from_db()
    assert state.status == ImportStatus.CANCELLED
    assert state.rows_processed == 20
    assert Customer.objects.count() == 20

    services.import_resume(state)
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_created == 50
    assert Customer.objects.count() == 50


def test_the_checkpoint_only_grows_and_points_at_record_starts(tmp_path):
    rows = [row(n, about_customer=f"multi\nline\n{n}") for n in range(1, 40)]
    path = write_csv(tmp_path / "a.csv", rows)
    data = path.read_bytes()
    seen = []
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=4
    )
    state, lease = services.import_claim(state, WORKER)
    run_import(state, lease, on_progress=lambda s: seen.append(s.bytes_processed))
    assert seen == sorted(seen)
    assert seen[-1] == len(data)
    for offset in (o for o in seen if o < len(data)):
        assert data[offset:].startswith(str(seen.index(offset) * 4 + 5).encode() + b",ID")


def test_a_changed_file_is_not_resumed(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(1)])
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    write_csv(path, [row(1), row(2)])
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.FAILED
    assert "changed" in state.error


def test_resuming_after_each_rejected_record_gives_the_uninterrupted_result(tmp_path, settings):
    """Every second record is one the reader rejects whole, and each batch of two ends with it:
    stopping and resuming there must neither invent a row nor shift a line number."""
    settings.IMPORT_MAX_ROW_BYTES = 64 * 1024
    data = csv_text(
        [
            row(1),
            row(2, about_customer="x" * (70 * 1024)),  # one line over the limit
            row(3),
            row(4, about_customer="a line\n" * 10_000),  # a closed quoted field over it
            row(5),
        ],
        newline="\r\n",
    ).encode()
    data += b'6,"ID6"x,Ann,"Lee\nsecond line"\r' + body([row(7)])  # malformed quoting
    data += b"8,ID8,Jos\xe9\n" + body([row(9)]) + b"10,ID10,A\x00nn\r\n" + body([row(11)])
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    whole = run_file(path)
    expected = list(whole.rejections.values_list("line_number", "reason", "raw"))
    assert [line for line, _, _ in expected] == [3, 5, 10007, 10010, 10012]
    assert (whole.rows_processed, whole.rows_created, whole.lines_processed) == (11, 6, 10013)

    Customer.objects.all().delete()
    state, _ = services.import_for_command(path, restart=True, overwrite_manual=False, batch_size=2)
    runs = 0
    while state.status != ImportStatus.COMPLETED:
        state, lease = services.import_claim(state, WORKER)
        state = run_import(state, lease, should_stop=lambda: True)
        runs += 1
        if state.status == ImportStatus.RUNNING:
            leases.release(state, lease, status=ImportStatus.QUEUED)
    assert runs == 7  # six batches, then the end of the file
    assert (state.rows_processed, state.rows_created, state.lines_processed) == (11, 6, 10013)
    assert list(state.rejections.values_list("line_number", "reason", "raw")) == expected
    assert Customer.objects.count() == 6


# --- Partial files: a column the file lacks is never written ------------------------------
PARTIAL_HEADER = ["Customer Id", "Email", "City", "Frist Name"]


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_a_partial_file_writes_only_its_columns(tmp_path, make_customer, batch_size):
    kept = {"first_name": "Ada", "last_name": "Byron", "company": "Engines", "about": "Long text"}
    make_customer(customer_id="ID1", email="a@example.com", city="Lima", **kept)
    make_customer(customer_id="ID2", email="b@example.com", city="Lima", **kept)
    make_customer(customer_id="ID3", email="c@example.com", city="Lima", **kept)
    rows = [
        ["ID1", "a@example.com", "Lima", "Zed"],  # same email and city: unchanged
        ["ID2", "b@example.com", "Quito", "Zed"],  # city changed
        ["ID3", "new@example.com", "Lima", "Zed"],  # email changed
        ["ID4", "d@example.com", "Cusco", "Zed"],  # new customer
    ]
    path = write_csv(tmp_path / "partial.csv", rows, header=PARTIAL_HEADER)
    state = run_file(path, batch_size=batch_size)

    assert state.status == ImportStatus.COMPLETED
    assert (state.rows_created, state.rows_updated, state.rows_unchanged) == (1, 2, 1)
    for customer_id, city, email in [
        ("ID1", "Lima", "a@example.com"),
        ("ID2", "Quito", "b@example.com"),
        ("ID3", "Lima", "new@example.com"),
    ]:
        customer = Customer.objects.get(customer_id=customer_id)
        assert (customer.city, customer.email) == (city, email)
        assert {name: getattr(customer, name) for name in kept} == kept
        assert customer.country == "United Kingdom"
    new = Customer.objects.get(customer_id="ID4")
    assert (new.city, new.email, new.first_name, new.about, new.subscription_date) == (
        "Cusco",
        "d@example.com",
        "",
        "",
        None,
    )
    assert state.columns_used == ["Customer Id", "City", "Email"]
    assert state.columns_ignored == ["Frist Name"]
    assert state.columns_absent == [
        "First Name",
        "Last Name",
        "Company",
        "Country",
        "Phone 1",
        "Phone 2",
        "Subscription Date",
        "Website",
        "About Customer",
    ]
    assert state.warnings == ["Ignored unknown column: Frist Name."]

    again = run_file(path, batch_size=batch_size)
    assert (again.rows_unchanged, again.rows_updated) == (4, 0)


def test_a_partial_file_keeps_absent_columns_of_hand_edited_customers_too(tmp_path):
    full = write_csv(tmp_path / "full.csv", [row(1)])
    run_file(full)
    Customer.objects.update(manually_edited_at=timezone.now(), phone_1="+1 edited")
    path = write_csv(
        tmp_path / "partial.csv", [["ID1", "ann1@example.com", "Quito"]], header=PARTIAL_HEADER[:3]
    )
    state = run_file(path, overwrite_manual=True)
    assert state.rows_updated == 1
    customer = Customer.objects.get()
    assert (customer.city, customer.phone_1, customer.last_name) == ("Quito", "+1 edited", "Lee1")
    assert customer.manually_edited_at is None


# --- Duplicates in file: exact across batches and resumes ---------------------------------
def dup_rows() -> list[list[str]]:
    # ID5's first row leaves it unchanged and ID7 is edited by hand: a duplicate is counted
    # whatever the outcome of the earlier row (nothing written for it).
    return [
        *(row(n) for n in range(1, 13)),
        row(1),
        row(5, city="Cusco"),
        row(12),
        row(7, city="Tacna"),
        row(13),
        row(1),
    ]


def test_duplicates_in_file_are_counted_whatever_the_earlier_rows_outcome(tmp_path):
    run_file(write_csv(tmp_path / "seed.csv", [row(5), row(7)]))
    Customer.objects.filter(customer_id="ID7").update(manually_edited_at=timezone.now())
    state = run_file(write_csv(tmp_path / "dups.csv", dup_rows()), batch_size=4)
    assert state.rows_duplicate == 5
    assert (state.rows_skipped_manual, state.rows_unchanged) == (2, 4)
    # A new import of the same file counts its own duplicates, not the previous import's rows.
    again = run_file(tmp_path / "dups.csv", batch_size=4)
    assert again.rows_duplicate == 5


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_duplicates_in_file_are_exact_across_a_resume(tmp_path, stop_after):
    path = write_csv(tmp_path / "dups.csv", dup_rows())
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=4
    )
    state, lease = services.import_claim(state, WORKER)
    calls = []

    def cancel(current):
        calls.append(current.rows_processed)
        if len(calls) == stop_after:
            services.import_cancel(current)

    with pytest.raises(LeaseLost):
        run_import(state, lease, on_progress=cancel)
    services.import_resume(state)
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_processed == 18
    assert state.rows_duplicate == 5
    assert (state.rows_created, state.rows_updated, state.rows_unchanged) == (13, 2, 3)
    # The header's columns were recorded once, at the start, and survive the resume.
    assert state.columns_used and state.columns_absent == [] and state.columns_ignored == []


# --- Length limits: exactly at the limit is accepted ----------------------------------------
def test_every_field_exactly_at_its_length_limit_is_stored_and_one_more_is_rejected(tmp_path):
    local = "a" * 64
    email = f"{local}@{'b' * 63}.{'c' * 63}.{'d' * 57}.com"
    at_limit = row(
        "x" * 64,
        first_name="é" * 100,
        last_name="L" * 100,
        company="C" * 200,
        city="ü" * 100,
        country="P" * 100,
        phone_1="1" * 50,
        phone_2="2" * 50,
        email=email,
        website="w" * 255,
    )
    at_limit[1] = "X" * 64  # Customer Id
    over = [*at_limit]
    over[1] = "Y" * 65
    state = run_file(write_csv(tmp_path / "limits.csv", [at_limit, over]))
    assert (state.rows_created, state.rows_rejected) == (1, 1)
    customer = Customer.objects.get()
    assert len(email) == 254 and customer.email == email
    assert (customer.customer_id, customer.first_name, customer.website) == (
        "X" * 64,
        "é" * 100,
        "w" * 255,
    )
    assert ImportRejection.objects.get().reason == "Customer Id is longer than 64 characters (65)"
