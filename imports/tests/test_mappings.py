"""Column mappings: proposals, remembered mappings, imports that use one, and run_import --map."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import CommandError, call_command

from customers.models import Customer
from imports import leases, mappings, services
from imports.columns import HeaderError
from imports.engine import run_import
from imports.mappings import ProposedColumn, Source
from imports.models import HeaderMapping, ImportState, ImportStatus
from imports.tests.helpers import at_once, write_csv
from imports.tests.test_run_import import manage

WORKER = "test-host:1"
ODD_HEADER = ["Client Ref", "Mail", "Vorname", "Nachname", "Town", "Notes", "Tier"]
# The names' proposal (Notes is an alias of About Customer) with Client Ref chosen.
ODD_MAPPING = ["customer_id", "email", "first_name", "last_name", "city", "about", ""]
NOTES_IGNORED = ["customer_id", "email", "first_name", "last_name", "city", "", ""]


def odd_rows(count: int, *, start: int = 1) -> list[list[str]]:
    return [
        [f"C{n}", f"p{n}@example.com", "Ann", f"Lee{n}", "Lima", f"note {n}", "gold"]
        for n in range(start, start + count)
    ]


# --- Header keys and proposals (no database for the key) ----------------------------------
def test_the_header_key_is_the_sha256_of_the_normalised_names():
    expected = hashlib.sha256(b"clientref\x1fmail").hexdigest()
    assert mappings.header_key(["Client Ref", "Mail"]) == expected
    assert mappings.header_key(["client_ref ", "MAIL"]) == expected
    assert mappings.header_key(["Mail", "Client Ref"]) != expected
    assert mappings.header_key(["Client Ref", "Mail", ""]) != expected


@pytest.mark.django_db
def test_names_are_proposed_by_alias_and_the_rest_left_to_a_person():
    proposal = mappings.propose_mapping(["Index", "Client Ref", "E-Mail", "Vorname", "Tier"])
    assert proposal == [
        ProposedColumn(0, "Index", "", Source.MATCHED),
        ProposedColumn(1, "Client Ref", "", Source.UNMATCHED),
        ProposedColumn(2, "E-Mail", "email", Source.MATCHED),
        ProposedColumn(3, "Vorname", "first_name", Source.MATCHED),
        ProposedColumn(4, "Tier", "", Source.UNMATCHED),
    ]
    assert [column.label for column in proposal] == ["", "", "Email", "First Name", ""]
    mapping = mappings.column_mapping(proposal)
    assert mapping == ["", "", "email", "first_name", ""]
    assert mappings.missing_required(mapping) == ["Customer Id"]
    assert mappings.missing_required(["customer_id", "email"]) == []
    assert mappings.missing_required([]) == ["Customer Id", "Email"]


@pytest.mark.django_db
def test_a_field_is_never_proposed_twice():
    proposal = mappings.propose_mapping(["Customer Id", "Email", "Mail", "Phone", "Telefon"])
    assert [(c.field, c.source) for c in proposal] == [
        ("customer_id", "matched"),
        ("email", "matched"),
        ("", "unmatched"),
        ("phone_1", "matched"),
        ("", "unmatched"),
    ]


def test_field_choices_list_every_field_by_label_then_ignore():
    choices = mappings.field_choices()
    assert choices[0] == ("customer_id", "Customer Id")
    assert choices[-1] == ("", "Ignore this column")
    assert len(choices) == 13
    assert dict(choices)["about"] == "About Customer"


# --- Remembered mappings -------------------------------------------------------------------
@pytest.mark.django_db
def test_a_remembered_mapping_is_proposed_for_the_same_header_set_only(user):
    remembered = mappings.remember_mapping(ODD_HEADER, ODD_MAPPING, by_user=user)
    assert remembered.header_key == mappings.header_key(ODD_HEADER)
    assert (remembered.names, remembered.mapping, remembered.updated_by) == (
        ODD_HEADER,
        ODD_MAPPING,
        user,
    )

    again = mappings.propose_mapping([name.upper() for name in ODD_HEADER])  # same set
    assert [c.field for c in again] == ODD_MAPPING
    assert {c.source for c in again} == {Source.REMEMBERED}
    assert again[0] == ProposedColumn(0, "CLIENT REF", "customer_id", Source.REMEMBERED)

    other = mappings.propose_mapping([*ODD_HEADER, "Extra"])  # a different set
    assert other[0] == ProposedColumn(0, "Client Ref", "", Source.UNMATCHED)
    assert other[1].source == Source.MATCHED


@pytest.mark.django_db
def test_remembering_again_replaces_the_mapping(make_user):
    mappings.remember_mapping(ODD_HEADER, ODD_MAPPING)
    changed = ["customer_id", "email", "last_name", "first_name", "", "about", ""]
    person = make_user("anna")
    mappings.remember_mapping(ODD_HEADER, changed, by_user=person)
    remembered = HeaderMapping.objects.get()
    assert (remembered.mapping, remembered.updated_by) == (changed, person)
    assert mappings.column_mapping(mappings.propose_mapping(ODD_HEADER)) == changed


@pytest.mark.django_db
def test_an_unusable_mapping_is_not_remembered():
    with pytest.raises(HeaderError, match="No column is chosen for Customer Id"):
        mappings.remember_mapping(ODD_HEADER, ["", "email", "", "", "", "", ""])
    with pytest.raises(HeaderError, match="header has changed"):
        mappings.remember_mapping(ODD_HEADER, ["customer_id", "email"])
    assert not HeaderMapping.objects.exists()


@pytest.mark.django_db
def test_a_remembered_mapping_that_no_longer_validates_is_passed_over():
    HeaderMapping.objects.create(
        header_key=mappings.header_key(["Client Ref", "Mail"]),
        names=["Client Ref", "Mail"],
        mapping=["customer_id", "retired_field"],
    )
    proposal = mappings.propose_mapping(["Client Ref", "Mail"])
    assert [(c.field, c.source) for c in proposal] == [("", "unmatched"), ("email", "matched")]


@pytest.mark.django_db(transaction=True)
def test_people_remembering_the_same_header_at_once_leave_one_row():
    chosen = [
        ["customer_id", "email", "first_name", "last_name", "city", "", ""],
        ["customer_id", "email", "last_name", "first_name", "", "about", ""],
    ]
    failures: list[BaseException] = []
    for _ in range(5):
        calls = iter(chosen * 2)

        def save(calls=calls):
            try:
                mappings.remember_mapping(ODD_HEADER, next(calls))
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                failures.append(exc)

        at_once(save)
        HeaderMapping.objects.all().delete()
    assert failures == []
    mappings.remember_mapping(ODD_HEADER, chosen[0])
    at_once(lambda: mappings.remember_mapping(ODD_HEADER, chosen[1]))
    assert list(HeaderMapping.objects.values_list("mapping", flat=True)) == [chosen[1]]


# --- Imports that use a mapping -------------------------------------------------------------
@pytest.mark.django_db
def test_an_import_with_a_mapping_uses_it_on_every_run_and_resume(tmp_path):
    path = write_csv(tmp_path / "odd.csv", odd_rows(25), header=ODD_HEADER)
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10, column_mapping=NOTES_IGNORED
    )
    assert ImportState.objects.get(pk=state.pk).column_mapping == NOTES_IGNORED
    runs = 0
    while state.status != ImportStatus.COMPLETED:
        state, lease = services.import_claim(state, WORKER)
        state = run_import(state, lease, should_stop=lambda: True)  # one batch per run
        runs += 1
        if state.status == ImportStatus.RUNNING:
            leases.release(state, lease, status=ImportStatus.QUEUED)
    assert runs == 4  # three batches, then the end of the file
    assert (state.rows_created, state.rows_rejected) == (25, 0)
    assert state.columns_used == ["Customer Id", "First Name", "Last Name", "City", "Email"]
    assert state.columns_ignored == ["Notes", "Tier"]
    assert state.columns_absent == [
        *("Company", "Country", "Phone 1", "Phone 2", "Subscription Date", "Website"),
        "About Customer",
    ]
    assert state.warnings == ["Ignored columns: Notes, Tier."]
    customer = Customer.objects.get(customer_id="C25")
    assert (customer.email, customer.first_name, customer.last_name, customer.city) == (
        "p25@example.com",
        "Ann",
        "Lee25",
        "Lima",
    )
    assert customer.about == ""  # Notes was ignored


@pytest.mark.django_db
def test_an_import_without_a_mapping_fails_on_odd_names_and_writes_nothing(tmp_path):
    path = write_csv(tmp_path / "odd.csv", odd_rows(3), header=ODD_HEADER)
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.FAILED
    assert state.error.startswith("Missing required column: Customer Id")
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_a_mapping_that_no_longer_fits_the_file_fails_the_import(tmp_path):
    path = write_csv(tmp_path / "odd.csv", odd_rows(3), header=ODD_HEADER)
    state, _ = services.import_for_command(
        path,
        restart=False,
        overwrite_manual=False,
        batch_size=10,
        column_mapping=["customer_id", "email"],
    )
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.FAILED
    assert state.error.startswith("The file's header has changed since the mapping was chosen")
    assert not Customer.objects.exists()


# --- run_import --map -----------------------------------------------------------------------
@pytest.fixture
def odd_file(tmp_path):
    return write_csv(tmp_path / "odd.csv", odd_rows(12), header=ODD_HEADER)


@pytest.mark.django_db
def test_run_import_map_imports_odd_headers(odd_file, capsys):
    call_command(
        "run_import",
        str(odd_file),
        "--map",
        "Client Ref=Customer Id",
        "--map",
        "notes=ignore",
        "--batch-size",
        "5",
    )
    out = capsys.readouterr().out
    assert "created 12" in out and "completed" in out
    assert "ignored: Notes, Tier;" in out and "(unknown)" not in out
    state = ImportState.objects.get()
    assert state.column_mapping == NOTES_IGNORED
    assert Customer.objects.get(customer_id="C3").about == ""
    assert Customer.objects.count() == 12


@pytest.mark.django_db
def test_run_import_map_accepts_field_names_and_ignore_and_moves_a_field(tmp_path):
    path = write_csv(
        tmp_path / "two.csv",
        [["C1", "old@example.com", "new@example.com", "Lima"]],
        header=["Client Ref", "Email", "Mail", "City"],
    )
    call_command(
        "run_import",
        str(path),
        "--map=client ref=customer_id",
        "--map=Mail=email",  # takes Email from the column the names gave it to
        "--map=City=ignore",
        verbosity=0,
    )
    assert ImportState.objects.get().column_mapping == ["customer_id", "", "email", ""]
    customer = Customer.objects.get()
    assert (customer.email, customer.city) == ("new@example.com", "")


@pytest.mark.django_db
def test_resuming_with_the_same_map_keeps_the_mapping_and_another_is_refused(odd_file):
    mapping = ["--map", "Client Ref=Customer Id"]
    services.import_for_command(
        odd_file,
        restart=False,
        overwrite_manual=False,
        batch_size=5,
        column_mapping=ODD_MAPPING,
    )  # queued, as if a run had been interrupted before it started
    with pytest.raises(CommandError, match=r"started with other columns; resume it without"):
        call_command("run_import", str(odd_file), *mapping, "--map", "Notes=ignore", verbosity=0)
    call_command("run_import", str(odd_file), *mapping, verbosity=0)
    state = ImportState.objects.get()
    assert (state.status, state.rows_created, state.column_mapping) == (
        ImportStatus.COMPLETED,
        12,
        ODD_MAPPING,
    )
    call_command("run_import", str(odd_file), *mapping, "--map", "Notes=ignore", verbosity=0)
    latest = ImportState.objects.latest("id")  # a finished import: a new one, new mapping
    assert (latest.column_mapping, latest.rows_unchanged) == (NOTES_IGNORED, 12)
    assert Customer.objects.get(customer_id="C1").about == "note 1"  # absent: left alone


@pytest.mark.django_db
@pytest.mark.parametrize(
    "maps, message",
    [
        (["Mail=Email"], "odd.csv: No column is chosen for Customer Id, which the import"),
        (["Client Ref=Customer Idx"], "odd.csv: Unknown field 'Customer Idx': use one of"),
        (["Client Reff=Customer Id"], "odd.csv: The file has no column 'Client Reff'; its"),
        (["Client Ref"], 'write it as "Header=Field"'),
        (["=Email"], 'write it as "Header=Field"'),
        (
            ["Client Ref=Customer Id", "Mail=ignore"],
            "odd.csv: No column is chosen for Email, which the import needs",
        ),
        (
            ["Client Ref=Customer Id", "Mail=Customer Id"],
            "--map 'Client Ref=Customer Id' and --map 'Mail=Customer Id' both choose Customer Id",
        ),
    ],
)
def test_bad_map_values_are_refused_and_nothing_is_written(odd_file, maps, message):
    args = [arg for value in maps for arg in ("--map", value)]
    with pytest.raises(CommandError) as caught:
        call_command("run_import", str(odd_file), *args, verbosity=0)
    assert message in str(caught.value)
    assert not ImportState.objects.exists()
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_map_needs_a_file_with_a_header_and_is_not_for_the_worker(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("run_import", str(tmp_path / "none.csv"), "--map", "A=Email")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match=r"empty\.csv: The file is empty\."):
        call_command("run_import", str(empty), "--map", "A=Email")
    with pytest.raises(CommandError, match="--map is for importing a PATH"):
        call_command("run_import", "--worker", "--once", "--map", "A=Email")
    assert not ImportState.objects.exists()


def test_run_import_map_in_a_subprocess(subprocess_env, odd_file):
    bad = manage(subprocess_env, "run_import", str(odd_file), "--map", "Mail=Emial")
    assert bad.returncode == 1
    assert "Unknown field 'Emial'" in bad.stderr and "Traceback" not in bad.stderr
    assert not ImportState.objects.exists()

    result = manage(subprocess_env, "run_import", str(odd_file), "--map", "Client Ref=Customer Id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created 12" in result.stdout
    assert (
        "Columns used: Customer Id, First Name, Last Name, City, Email, About Customer;"
        in result.stdout
    )
    assert ImportState.objects.get().column_mapping == ODD_MAPPING
    assert Customer.objects.count() == 12
