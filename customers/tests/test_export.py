"""Exporting customers: the CSV, its filters, its entry points, its streaming and a round trip."""

from __future__ import annotations

import csv
import datetime
import html
import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customerpanel.csvfiles import FORMULA_PREFIXES, spreadsheet_safe, spreadsheet_unmark
from customers import services
from customers.models import CSV_HEADER, IMPORTED_FIELDS, Customer
from imports.roles import VIEWER

pytestmark = pytest.mark.django_db

API = "/api/v1/customers/export/"
PAGE = "/customers/export/"
HTMX = {"HX-Request": "true"}
BOM = b"\xef\xbb\xbf"
EXPORT_FILTER = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')

# Values a CSV writer, a reader and a spreadsheet each find awkward.
AWKWARD = [
    {"first_name": "=1+1", "last_name": "+44 20", "company": "-minus", "city": "@SUM(A1)"},
    {"company": 'Smith, "The Best", & Sons', "about": "line one\nline two, with a comma"},
    {"about": "windows\r\nline breaks\r\nand a lone\rCR", "website": "https://a.example/?x=1,2"},
    {"first_name": "'=already marked", "last_name": "''+twice", "company": "'plain quote"},
    {"first_name": "Zoë", "city": "São Paulo", "about": '=HYPERLINK("http://evil")'},
    {"phone_1": "+1-555-0100", "phone_2": "-", "subscription_date": datetime.date(2021, 5, 4)},
    {"first_name": "", "last_name": "", "company": "", "city": "", "about": ""},
]


def parse(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def body(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def ids(rows: list[list[str]]) -> list[str]:
    return [row[1] for row in rows[1:]]


def snapshot() -> list[tuple]:
    return list(Customer.objects.order_by("customer_id").values_list(*IMPORTED_FIELDS))


@pytest.fixture
def awkward(make_customer) -> list[Customer]:
    return [make_customer(**fields) for fields in AWKWARD]


# --- The CSV ---------------------------------------------------------------------------------


def test_api_export_is_the_import_format_with_a_running_index(api_client, awkward):
    response = api_client.get(API)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="customers-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
    )
    assert response["Cache-Control"] == "no-store"
    rows = parse(body(response))
    header = "Index,Customer Id,First Name,Last Name,Company,City,Country,Phone 1,Phone 2,Email,"
    header += "Subscription Date,Website,About Customer"
    assert rows[0] == list(CSV_HEADER) == header.split(",")
    assert [row[0] for row in rows[1:]] == [str(n) for n in range(1, len(awkward) + 1)]
    # Oldest first; every value as stored (formula cells carry the mark, see below).
    for row, customer in zip(rows[1:], awkward, strict=True):
        stored = Customer.objects.values_list(*IMPORTED_FIELDS).get(pk=customer.pk)
        expected = ["" if v is None else str(v) for v in stored]
        assert [spreadsheet_unmark(cell) for cell in row[1:]] == expected
    assert rows[1 + 5][10] == "2021-05-04"


def test_api_export_answers_csv_whatever_the_accept_header(api_client, make_customer):
    make_customer()
    response = api_client.get(API, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


def test_an_empty_table_exports_the_header_only(api_client):
    assert parse(body(api_client.get(API))) == [list(CSV_HEADER)]


def test_formula_cells_are_neutralised(api_client, awkward):
    rows = parse(body(api_client.get(API)))
    cells = [cell for row in rows[1:] for cell in row[1:]]
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]
    first = rows[1]
    assert first[2:6] == ["'=1+1", "'+44 20", "'-minus", "'@SUM(A1)"]
    # A value that already looks marked gets one more mark, so the import can tell them apart.
    assert rows[4][2:5] == ["''=already marked", "'''+twice", "'plain quote"]
    assert rows[6][7:9] == ["'+1-555-0100", "'-"]


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1", "-1", "@x", "\tx", "\rx", "'=x", "''=x", "'", "''", "'plain", "plain", "", "-"],
)
def test_the_mark_is_reversible_and_leaves_plain_values_alone(value):
    safe = spreadsheet_safe(value)
    assert not safe.startswith(FORMULA_PREFIXES)
    assert spreadsheet_unmark(safe) == value
    if not value.lstrip("'").startswith(FORMULA_PREFIXES):
        assert safe == value


def test_bom_only_when_asked(api_client, client_logged_in, make_customer):
    make_customer(first_name="Zoë")
    assert not body(api_client.get(API)).startswith(BOM)
    with_bom = body(api_client.get(API, {"bom": "1"}))
    assert with_bom.startswith(BOM + b"Index,Customer Id,")
    assert "Zoë" in with_bom.decode("utf-8")
    assert body(client_logged_in.get(PAGE, {"bom": "1"})).startswith(BOM + b"Index,")


# --- Filters ---------------------------------------------------------------------------------


@pytest.fixture
def mixed(make_customer, user):
    chile = make_customer(first_name="Zelda", country="Chile")
    peru = make_customer(first_name="Zelda", country="Peru")
    other = make_customer(first_name="Otto", country="Chile")
    services.customer_update(peru, data={"city": "Lima"}, by_user=user)
    return chile, peru, other


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "zelda"},
        {"country": "Chile"},
        {"edited": "true"},
        {"edited": "false"},
        {"q": "zelda", "country": "Chile", "edited": "false"},
        {"q": "nobody"},
    ],
)
def test_api_export_has_exactly_the_list_s_customers(api_client, mixed, params):
    listed = api_client.get("/api/v1/customers/", params).json()["results"]
    exported = ids(parse(body(api_client.get(API, params))))
    assert sorted(exported) == sorted(c["customer_id"] for c in listed)
    # Oldest first in the export.
    assert exported == sorted(exported)


def test_api_export_refuses_a_bad_filter(api_client):
    assert api_client.get(API, {"edited": "maybe"}).status_code == 400


def test_page_export_has_the_list_s_filters(client_logged_in, mixed):
    chile, peru, other = mixed
    rows = parse(body(client_logged_in.get(PAGE, {"q": "zelda", "edited": "yes"})))
    assert ids(rows) == [peru.customer_id]
    rows = parse(body(client_logged_in.get(PAGE, {"country": "Chile", "edited": "no"})))
    assert ids(rows) == [chile.customer_id, other.customer_id]
    # Like the list, a parameter it cannot read is dropped, not refused.
    rows = parse(body(client_logged_in.get(PAGE, {"edited": "maybe", "after": "x"})))
    assert len(rows) == 4


def export_filters(content: bytes) -> dict[str, str]:
    """The filters the page's Export button posts (hidden inputs of #customer-export)."""
    text = content.decode()
    carrier = text[text.index('id="customer-export"') :]
    carrier = carrier[: carrier.index("</span>")]
    return {
        html.unescape(name): html.unescape(value) for name, value in EXPORT_FILTER.findall(carrier)
    }


def test_the_page_s_export_button_carries_the_current_filters(client_logged_in, make_customer):
    make_customer()
    page = client_logged_in.get("/customers/")
    assert 'action="/customers/exports/start/"' in page.content.decode()
    assert export_filters(page.content) == {}
    page = client_logged_in.get("/customers/", {"q": "ada x", "country": "Chile", "edited": "yes"})
    assert export_filters(page.content) == {"q": "ada x", "country": "Chile", "edited": "yes"}
    # Filtering with htmx swaps only the rows: they bring the filters along, out of band.
    rows = client_logged_in.get("/customers/", {"country": "Peru"}, headers=HTMX)
    text = rows.content.decode()
    assert "<template>" in text and 'id="customer-export"' in text
    assert 'hx-swap-oob="true"' in text
    assert export_filters(rows.content) == {"country": "Peru"}


# --- Access ----------------------------------------------------------------------------------


def test_a_person_without_a_role_may_not_export(client, make_user, make_customer):
    from rest_framework.test import APIClient

    make_customer()
    nobody = make_user("nobody")
    api = APIClient()
    api.force_authenticate(nobody)
    assert api.get(API).status_code == 403
    client.force_login(nobody)
    assert client.get(PAGE).status_code == 403


def test_a_viewer_may_export(client, make_user, make_customer):
    make_customer()
    client.force_login(make_user("viewer", VIEWER))
    assert len(parse(body(client.get(PAGE)))) == 2
    assert len(parse(body(client.get(API)))) == 2
    assert 'id="customer-export"' in client.get("/customers/").content.decode()


def test_without_the_export_permission_there_is_no_button_and_no_export(
    client, make_user, make_customer
):
    from django.contrib.auth.models import Permission

    make_customer()
    reader = make_user("reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(reader)
    page = client.get("/customers/")
    assert page.status_code == 200 and 'id="customer-export"' not in page.content.decode()
    assert client.get(PAGE).status_code == 403
    assert client.get(API).status_code == 403


def test_anonymous_gets_the_login_page_or_401(client, make_customer):
    make_customer()
    page = client.get(PAGE)
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=")
    assert client.get(API).status_code == 401


# --- Streaming -------------------------------------------------------------------------------


def test_the_api_streams_in_keyset_chunks_of_2000(api_client):
    Customer.objects.bulk_create(
        Customer(customer_id=f"S{n:05d}", email=f"s{n}@example.com") for n in range(4500)
    )
    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(API)
        before = [q["sql"] for q in queries if "customers_customer" in q["sql"]]
        content = body(response)
    assert before == []  # nothing is read until the response is sent
    sql = [q["sql"] for q in queries if "customers_customer" in q["sql"]]
    assert len(sql) == 3  # 2,000 + 2,000 + 500 rows
    for statement in sql:
        upper = statement.upper()
        assert "LIMIT 2000" in upper and "ORDER BY" in upper
        assert "COUNT(" not in upper and "OFFSET" not in upper
    assert '"about"' in sql[0]  # values, not model instances: only the export's columns
    assert '"manually_edited_at"' not in sql[0]
    rows = parse(content)
    assert len(rows) == 4501 and rows[-1][:2] == ["4500", "S04499"]


def test_each_chunk_is_one_piece_of_text_and_one_query(make_customer):
    for _ in range(5):
        make_customer()
    seen = []
    with CaptureQueriesContext(connection) as queries:
        pieces = list(
            services.customer_export_lines(
                Customer.objects.all(), chunk_size=2, progress=seen.append
            )
        )
    assert len(queries) == 3 and len(pieces) == 3
    assert seen == [2, 4, 5]
    assert len(parse("".join(pieces).encode())) == 6


# --- The command -----------------------------------------------------------------------------


def test_command_writes_the_file_with_filters_and_progress(tmp_path, mixed):
    chile, peru, other = mixed
    out = io.StringIO()
    path = tmp_path / "chile.csv"
    call_command("export_customers", str(path), "--country", "Chile", verbosity=2, stdout=out)
    rows = parse(path.read_bytes())
    assert ids(rows) == [chile.customer_id, other.customer_id]
    report = out.getvalue()
    assert "2 customers exported" in report
    assert f"Exported 2 customers to {path}" in report
    assert not list(tmp_path.glob(".*partial"))

    call_command("export_customers", str(path), "--q", "zelda", "--edited", "true", "--bom")
    content = path.read_bytes()
    assert content.startswith(BOM) and ids(parse(content[3:])) == [peru.customer_id]


def test_command_writes_to_standard_output_and_reports_on_standard_error(mixed):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_customers", "-", "--edited", "false", stdout=out, stderr=err)
    assert ids(parse(out.getvalue().encode())) == [mixed[0].customer_id, mixed[2].customer_id]
    assert "Exported 2 customers to standard output" in err.getvalue()
    assert "Exported" not in out.getvalue()


def test_command_is_quiet_at_verbosity_0(tmp_path, make_customer):
    make_customer()
    out = io.StringIO()
    call_command("export_customers", str(tmp_path / "x.csv"), verbosity=0, stdout=out)
    assert out.getvalue() == ""


def test_command_refuses_bad_input(tmp_path):
    with pytest.raises(CommandError, match="edited"):
        call_command("export_customers", "-", "--edited", "maybe")
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("export_customers", str(tmp_path / "missing" / "x.csv"), verbosity=0)
    with pytest.raises(CommandError, match="chunk-size"):
        call_command("export_customers", "-", "--chunk-size", "0")


# --- Round trip --------------------------------------------------------------------------------


def import_file(path) -> dict[str, int]:
    from imports.models import ImportState, ImportStatus

    call_command("run_import", str(path), verbosity=0)
    state = ImportState.objects.order_by("-id").first()
    assert state.status == ImportStatus.COMPLETED, state.error
    return {
        name: getattr(state, f"rows_{name}")
        for name in ("processed", "created", "updated", "unchanged", "skipped_manual", "rejected")
    }


def test_round_trip_an_export_imports_as_unchanged(tmp_path, awkward, make_customer):
    for n in range(30):
        make_customer(about=f'row {n}\nwith, commas and "quotes"', company=f"={n}+1")
    before = snapshot()
    path = tmp_path / "all.csv"
    call_command("export_customers", str(path), "--chunk-size", "7", verbosity=0)
    result = import_file(path)
    total = len(before)
    assert result == {
        "processed": total,
        "created": 0,
        "updated": 0,
        "unchanged": total,
        "skipped_manual": 0,
        "rejected": 0,
    }
    assert snapshot() == before


def test_round_trip_with_bom_from_the_api(tmp_path, api_client, awkward):
    before = snapshot()
    path = tmp_path / "excel.csv"
    path.write_bytes(body(api_client.get(API, {"bom": "1"})))
    result = import_file(path)
    assert (result["unchanged"], result["created"], result["updated"]) == (len(before), 0, 0)
    assert snapshot() == before


def test_an_export_restores_the_exported_values_exactly(tmp_path, awkward):
    """Not only "unchanged": importing the export puts back what was changed or deleted since."""
    before = snapshot()
    path = tmp_path / "backup.csv"
    call_command("export_customers", str(path), verbosity=0)
    Customer.objects.filter(pk=awkward[0].pk).update(first_name="changed")  # not by hand
    Customer.objects.filter(pk=awkward[3].pk).delete()
    result = import_file(path)
    assert (result["created"], result["updated"], result["unchanged"]) == (1, 1, len(before) - 2)
    assert snapshot() == before


def test_customers_edited_by_hand_are_exported_and_left_alone_on_import(tmp_path, awkward, user):
    services.customer_update(awkward[1], data={"city": "Cusco"}, by_user=user)
    before = snapshot()
    path = tmp_path / "all.csv"
    call_command("export_customers", str(path), verbosity=0)
    result = import_file(path)
    assert result["skipped_manual"] == 1
    assert (result["created"], result["updated"]) == (0, 0)
    assert snapshot() == before
    assert Customer.objects.get(pk=awkward[1].pk).manually_edited_at is not None


def test_round_trip_of_a_messy_generated_file(tmp_path):
    """A realistic messy file (duplicates, quoted line breaks, rejections), imported, exported
    and imported again: every customer comes back unchanged."""
    source = tmp_path / "messy.csv"
    call_command("generate_customers", str(source), "--rows", "1500", "--dirty", "--quiet")
    first = import_file(source)
    assert first["created"] > 1000 and first["rejected"] > 0
    before = snapshot()
    exported = tmp_path / "export.csv"
    call_command("export_customers", str(exported), verbosity=0)
    again = import_file(exported)
    assert (again["unchanged"], again["created"], again["updated"]) == (len(before), 0, 0)
    assert again["rejected"] == 0
    assert snapshot() == before
