"""Each role against every page action, API method and admin action (the role x action table).

A role may do what its row in `imports/roles.py` says and nothing more: an action it
may take works (and is shown), any other answers 403 (and is not shown). Roles are a
ladder, so each action is described by the least role that may take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from rest_framework.test import APIClient

from customers import services as customer_services
from customers.models import Customer
from imports import services as import_services
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.roles import ADMINISTRATOR, EDITOR, IMPORTER, ROLES, VIEWER
from imports.tests.helpers import row, write_csv

pytestmark = pytest.mark.django_db

LADDER = [VIEWER, EDITOR, IMPORTER, ADMINISTRATOR]
NO_ROLE = "(no role)"
ALL_ROLES = [NO_ROLE, *LADDER]


def may(role: str, least: str) -> bool:
    return role != NO_ROLE and LADDER.index(role) >= LADDER.index(least)


@dataclass
class World:
    """One of everything an action can act on."""

    customer: Customer
    queued: ImportState
    cancelled: ImportState
    with_errors: ImportState


@pytest.fixture
def world(make_customer, import_dir) -> World:
    customer = customer_services.customer_update(
        make_customer(), data={"city": "Oslo"}, by_user=None
    )
    for name in ("queued.csv", "cancelled.csv", "fresh.csv"):
        write_csv(import_dir / name, [row(1), row(2)])
    queued = import_services.import_enqueue_path("queued.csv")
    cancelled = import_services.import_cancel(import_services.import_enqueue_path("cancelled.csv"))
    with_errors = ImportState.objects.create(
        status=ImportStatus.COMPLETED,
        source_path=str(import_dir / "old.csv"),
        original_name="old.csv",
        rows_processed=1,
        rows_rejected=1,
    )
    ImportRejection.objects.create(
        import_state=with_errors, line_number=2, customer_id="X1", reason="bad email", raw="x"
    )
    return World(customer, queued, cancelled, with_errors)


@pytest.fixture
def person(make_user, request):
    role = request.param
    return role, make_user("someone", None if role == NO_ROLE else role)


CUSTOMER_FORM = {"customer_id": "NEW1", "email": "new1@example.com", "city": "Rome"}


# --- Pages -----------------------------------------------------------------------------------
# (action, least role, method, url, POST data)
PAGE_ACTIONS: list[tuple[str, str, str, Any, Any]] = [
    ("list customers", VIEWER, "get", lambda w: "/customers/", None),
    ("see a customer", VIEWER, "get", lambda w: f"/customers/{w.customer.pk}/", None),
    ("export customers", VIEWER, "get", lambda w: "/customers/export/?country=Chile", None),
    (
        "start a background export",
        VIEWER,
        "post",
        lambda w: "/customers/exports/start/",
        {"country": "Chile"},
    ),
    ("list one's exports", VIEWER, "get", lambda w: "/customers/exports/", None),
    ("open the new-customer form", EDITOR, "get", lambda w: "/customers/new/", None),
    ("create a customer", EDITOR, "post", lambda w: "/customers/new/", CUSTOMER_FORM),
    ("open the edit form", EDITOR, "get", lambda w: f"/customers/{w.customer.pk}/edit/", None),
    (
        "edit a customer",
        EDITOR,
        "post",
        lambda w: f"/customers/{w.customer.pk}/edit/",
        {"customer_id": "EDIT1", "email": "edit1@example.com"},
    ),
    ("confirm a delete", EDITOR, "get", lambda w: f"/customers/{w.customer.pk}/delete/", None),
    ("delete a customer", EDITOR, "post", lambda w: f"/customers/{w.customer.pk}/delete/", {}),
    (
        "clear the edited-by-hand mark",
        EDITOR,
        "post",
        lambda w: f"/customers/{w.customer.pk}/clear-edited/",
        {},
    ),
    ("list imports", VIEWER, "get", lambda w: "/imports/", None),
    ("see an import", VIEWER, "get", lambda w: f"/imports/{w.queued.pk}/", None),
    (
        "start an import (folder)",
        IMPORTER,
        "post",
        lambda w: "/imports/from-folder/",
        {"name": "fresh.csv"},
    ),
    (
        "start an import over hand edits",
        IMPORTER,
        "post",
        lambda w: "/imports/from-folder/",
        {"name": "fresh.csv", "overwrite_manual": "on"},
    ),
    ("start an import (upload)", IMPORTER, "post", lambda w: "/imports/upload/", {}),
    ("cancel an import", IMPORTER, "post", lambda w: f"/imports/{w.queued.pk}/cancel/", {}),
    ("resume an import", IMPORTER, "post", lambda w: f"/imports/{w.cancelled.pk}/resume/", {}),
    (
        "download an error report",
        IMPORTER,
        "get",
        lambda w: f"/imports/{w.with_errors.pk}/errors.csv",
        None,
    ),
]


@pytest.mark.parametrize("person", ALL_ROLES, indirect=True, ids=ALL_ROLES)
@pytest.mark.parametrize(
    "action, least, method, url, data", PAGE_ACTIONS, ids=[a[0] for a in PAGE_ACTIONS]
)
def test_pages(client, world, person, action, least, method, url, data):
    role, user = person
    client.force_login(user)
    args = () if data is None else (data,)
    response = getattr(client, method)(url(world), *args)
    if may(role, least):
        assert response.status_code in (200, 302), response.content[:500]
        if response.status_code == 302:
            assert "/login/" not in response["Location"]
    else:
        assert response.status_code == 403


def test_page_actions_change_what_they_say(client, world, make_user):
    client.force_login(make_user("ed", EDITOR))
    client.post(f"/customers/{world.customer.pk}/clear-edited/")
    world.customer.refresh_from_db()
    assert world.customer.manually_edited_at is None

    client.force_login(make_user("imp", IMPORTER))
    client.post(f"/imports/{world.queued.pk}/cancel/")
    client.post(f"/imports/{world.cancelled.pk}/resume/")
    world.queued.refresh_from_db()
    world.cancelled.refresh_from_db()
    assert world.queued.status == ImportStatus.CANCELLED
    assert world.cancelled.status == ImportStatus.QUEUED


# What each role sees on the pages: (marker in the HTML, page, least role that sees it).
SHOWN = [
    ("New customer", lambda w: "/customers/", EDITOR),
    ("/customers/exports/start/", lambda w: "/customers/", VIEWER),
    ('/edit/"', lambda w: f"/customers/{w.customer.pk}/", EDITOR),
    ('/delete/"', lambda w: f"/customers/{w.customer.pk}/", EDITOR),
    ("/clear-edited/", lambda w: f"/customers/{w.customer.pk}/", EDITOR),
    ("/imports/upload/", lambda w: "/imports/", IMPORTER),
    ("/imports/from-folder/", lambda w: "/imports/", IMPORTER),
    ('name="overwrite_manual"', lambda w: "/imports/", IMPORTER),
    ("/cancel/", lambda w: f"/imports/{w.queued.pk}/", IMPORTER),
    ("/resume/", lambda w: f"/imports/{w.cancelled.pk}/", IMPORTER),
    ("errors.csv", lambda w: f"/imports/{w.with_errors.pk}/", IMPORTER),
    ("errors.csv", lambda w: "/imports/", IMPORTER),
]


@pytest.mark.parametrize("person", LADDER, indirect=True, ids=LADDER)
@pytest.mark.parametrize(
    "marker, page, least", SHOWN, ids=[f"{s[0]} on {i}" for i, s in enumerate(SHOWN)]
)
def test_pages_show_only_allowed_actions(client, world, person, marker, page, least):
    role, user = person
    client.force_login(user)
    response = client.get(page(world))
    assert response.status_code == 200
    assert (marker in response.content.decode()) == may(role, least)


# --- API -------------------------------------------------------------------------------------
API_ACTIONS: list[tuple[str, str, str, Any, Any]] = [
    ("list customers", VIEWER, "get", lambda w: "/api/v1/customers/", None),
    ("read a customer", VIEWER, "get", lambda w: f"/api/v1/customers/{w.customer.pk}/", None),
    ("export customers", VIEWER, "get", lambda w: "/api/v1/customers/export/", None),
    (
        "start a background export",
        VIEWER,
        "post",
        lambda w: "/api/v1/customers/exports/",
        {"country": "Chile"},
    ),
    ("create a customer", EDITOR, "post", lambda w: "/api/v1/customers/", CUSTOMER_FORM),
    (
        "replace a customer",
        EDITOR,
        "put",
        lambda w: f"/api/v1/customers/{w.customer.pk}/",
        {"customer_id": "PUT1", "email": "put1@example.com"},
    ),
    (
        "change a customer",
        EDITOR,
        "patch",
        lambda w: f"/api/v1/customers/{w.customer.pk}/",
        {"city": "Lima"},
    ),
    ("delete a customer", EDITOR, "delete", lambda w: f"/api/v1/customers/{w.customer.pk}/", None),
    (
        "clear the edited-by-hand mark",
        EDITOR,
        "post",
        lambda w: f"/api/v1/customers/{w.customer.pk}/clear-manual-edit/",
        None,
    ),
    ("list imports", VIEWER, "get", lambda w: "/api/v1/imports/", None),
    ("read an import", VIEWER, "get", lambda w: f"/api/v1/imports/{w.queued.pk}/", None),
    ("start an import", IMPORTER, "post", lambda w: "/api/v1/imports/", {"name": "fresh.csv"}),
    (
        "start an import over hand edits",
        IMPORTER,
        "post",
        lambda w: "/api/v1/imports/",
        {"name": "fresh.csv", "overwrite_manual": True},
    ),
    (
        "cancel an import",
        IMPORTER,
        "post",
        lambda w: f"/api/v1/imports/{w.queued.pk}/cancel/",
        None,
    ),
    (
        "resume an import",
        IMPORTER,
        "post",
        lambda w: f"/api/v1/imports/{w.cancelled.pk}/resume/",
        None,
    ),
    (
        "download an error report",
        IMPORTER,
        "get",
        lambda w: f"/api/v1/imports/{w.with_errors.pk}/errors.csv",
        None,
    ),
]


@pytest.mark.parametrize("person", ALL_ROLES, indirect=True, ids=ALL_ROLES)
@pytest.mark.parametrize(
    "action, least, method, url, data", API_ACTIONS, ids=[a[0] for a in API_ACTIONS]
)
def test_api(world, person, action, least, method, url, data):
    role, user = person
    api = APIClient()
    api.force_authenticate(user)
    response = getattr(api, method)(url(world), data, format="json")
    if may(role, least):
        assert 200 <= response.status_code < 300, response.content[:500]
    else:
        assert response.status_code == 403


def test_over_hand_edits_needs_its_own_permission(world, make_user):
    """`import_over_edits` is separate from `start_import`: a custom group may hold one only."""
    starter = make_user("starter")
    group = Group.objects.create(name="Starters")
    group.permissions.set(
        Group.objects.get(name=IMPORTER).permissions.exclude(codename="import_over_edits")
    )
    starter.groups.add(group)
    api = APIClient()
    api.force_authenticate(starter)
    over = api.post(
        "/api/v1/imports/", {"name": "fresh.csv", "overwrite_manual": True}, format="json"
    )
    assert over.status_code == 403
    assert api.post("/api/v1/imports/", {"name": "fresh.csv"}, format="json").status_code == 202


# --- Admin -----------------------------------------------------------------------------------
ADMIN = "/admin/customers/customer/"


def _customer_form(customer: Customer, **changes) -> dict:
    form = {f: getattr(customer, f) or "" for f in ("customer_id", "email", "first_name", "city")}
    form["subscription_date"] = ""
    return form | changes


# (action, least role, how, effect seen when it worked)
ADMIN_ACTIONS: list[tuple[str, str, Any, Any]] = [
    (
        "see the customer list",
        VIEWER,
        lambda c, w: c.get(ADMIN),
        lambda w: True,
    ),
    (
        "add a customer",
        EDITOR,
        lambda c, w: c.post(f"{ADMIN}add/", {"customer_id": "ADM1", "email": "a@example.com"}),
        lambda w: Customer.objects.filter(customer_id="ADM1").exists(),
    ),
    (
        "change a customer",
        EDITOR,
        lambda c, w: c.post(
            f"{ADMIN}{w.customer.pk}/change/", _customer_form(w.customer, city="Bonn")
        ),
        lambda w: Customer.objects.get(pk=w.customer.pk).city == "Bonn",
    ),
    (
        "delete a customer",
        EDITOR,
        lambda c, w: c.post(f"{ADMIN}{w.customer.pk}/delete/", {"post": "yes"}),
        lambda w: not Customer.objects.filter(pk=w.customer.pk).exists(),
    ),
    (
        "bulk delete selected customers",
        EDITOR,
        lambda c, w: c.post(
            ADMIN, {"action": "delete_selected", "_selected_action": [w.customer.pk], "post": "yes"}
        ),
        lambda w: not Customer.objects.filter(pk=w.customer.pk).exists(),
    ),
    (
        "bulk clear the edited-by-hand mark",
        EDITOR,
        lambda c, w: c.post(
            ADMIN, {"action": "clear_manual_edit", "_selected_action": [w.customer.pk]}
        ),
        lambda w: Customer.objects.get(pk=w.customer.pk).manually_edited_at is None,
    ),
    (
        "see the import list",
        VIEWER,
        lambda c, w: c.get("/admin/imports/importstate/"),
        lambda w: True,
    ),
    (
        "delete a finished import",
        ADMINISTRATOR,
        lambda c, w: c.post(
            f"/admin/imports/importstate/{w.with_errors.pk}/delete/", {"post": "yes"}
        ),
        lambda w: not ImportState.objects.filter(pk=w.with_errors.pk).exists(),
    ),
    (
        "see the users",
        ADMINISTRATOR,
        lambda c, w: c.get("/admin/auth/user/"),
        lambda w: True,
    ),
]


@pytest.mark.parametrize("role", LADDER)
@pytest.mark.parametrize(
    "action, least, how, worked", ADMIN_ACTIONS, ids=[a[0] for a in ADMIN_ACTIONS]
)
def test_admin_for_staff(client, world, make_user, role, action, least, how, worked):
    """Staff of every role, to show the admin itself checks each model permission."""
    client.force_login(make_user("someone", role, is_staff=True))
    response = how(client, world)
    if may(role, least):
        assert response.status_code in (200, 302), response.content[:500]
        assert worked(world)
    else:
        # Refused (403) or, for a bulk action the role does not have, not offered at all.
        assert response.status_code in (403, 302, 200)
        if response.status_code != 403:
            assert not worked(world)


@pytest.mark.parametrize("role", [NO_ROLE, VIEWER, EDITOR, IMPORTER])
def test_admin_site_is_for_administrators_only(client, make_user, role):
    """Only staff reach the admin; `create_user --role Administrator` makes staff."""
    client.force_login(make_user("someone", None if role == NO_ROLE else role))
    response = client.get(ADMIN)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_bulk_delete_goes_through_the_service(admin_client, make_customer, caplog):
    doomed = [make_customer(), make_customer()]
    kept = make_customer()
    with caplog.at_level("INFO", logger="customers.services"):
        response = admin_client.post(
            ADMIN,
            {
                "action": "delete_selected",
                "_selected_action": [c.pk for c in doomed],
                "post": "yes",
            },
        )
    assert response.status_code == 302
    assert list(Customer.objects.values_list("pk", flat=True)) == [kept.pk]
    assert "2 customers deleted by admin (bulk)" in caplog.text


# --- The roles themselves and the command line -----------------------------------------------
def test_the_four_groups_exist_with_exactly_their_permissions():
    for name, perms in ROLES.items():
        group = Group.objects.get(name=name)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert held == set(perms), name


@pytest.mark.parametrize("role", LADDER)
def test_create_user_command_gives_the_role(role, capsys):
    call_command("create_user", "newbie", "--role", role, "--email", "n@example.com")
    from django.contrib.auth import get_user_model

    person = get_user_model().objects.get(username="newbie")
    assert list(person.groups.values_list("name", flat=True)) == [role]
    assert person.is_staff == (role == ADMINISTRATOR)
    assert not person.is_superuser
    out = capsys.readouterr().out
    assert "password:" in out


# --- Who did what, as shown ---------------------------------------------------------------------
def test_customer_page_and_api_show_who_edited_by_hand(client, world, make_user):
    editor = make_user("edna", EDITOR)
    customer_services.customer_update(world.customer, data={"city": "Kyiv"}, by_user=editor)
    client.force_login(editor)
    assert (
        "Edited by hand by edna on"
        in client.get(f"/customers/{world.customer.pk}/").content.decode()
    )
    api = APIClient()
    api.force_authenticate(editor)
    assert api.get(f"/api/v1/customers/{world.customer.pk}/").json()["manually_edited_by"] == "edna"


def test_import_page_and_api_show_who_started_cancelled_and_resumed(client, world, make_user):
    starter, canceller, resumer = (make_user(n, IMPORTER) for n in ("sam", "cat", "rey"))
    state = import_services.import_enqueue_path("fresh.csv", by_user=starter)
    client.force_login(canceller)
    client.post(f"/imports/{state.pk}/cancel/")
    api = APIClient()
    api.force_authenticate(resumer)
    body = api.post(f"/api/v1/imports/{state.pk}/resume/").json()
    assert (body["started_by"], body["cancelled_by"], body["resumed_by"]) == ("sam", "cat", "rey")
    import_services.import_cancel(state, by_user=canceller)
    html = client.get(f"/imports/{state.pk}/").content.decode()
    assert "by sam" in html and "by rey" in html and "by cat" in html
