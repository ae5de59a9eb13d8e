"""Abuse limits and bad input: login lock-out, API throttling, 401, health check, NUL bytes."""

from __future__ import annotations

import logging
import socket

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.admin import CappedCountPaginator
from imports.models import ImportState, ImportStatus

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


# --- Login lock-out (django-axes) ----------------------------------------------------------
@pytest.fixture
def lockout_after_3(settings):
    settings.AXES_FAILURE_LIMIT = 3


def login(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_login_locks_out_a_username_even_with_the_right_password(
    client, user, lockout_after_3, caplog
):
    for _ in range(2):
        assert login(client, "staff", "wrong").status_code == 200  # the form again
    with caplog.at_level(logging.WARNING, logger="axes"):
        locked = login(client, "staff", "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "AXES: Locking out" in caplog.text  # the event is logged

    # The right password, even from another address, is refused for the cool-off period.
    right = login(client, "staff", "pw-staff-123", address="10.0.0.2")
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_login_locks_out_a_client_address_guessing_many_usernames(client, user, lockout_after_3):
    for name in ("alice", "bob", "carol"):
        login(client, name, "guess", address="10.0.0.9")
    assert login(client, "staff", "pw-staff-123", address="10.0.0.9").status_code == 429
    # Someone else, elsewhere, still logs in.
    other = login(client, "staff", "pw-staff-123", address="10.0.0.10")
    assert other.status_code == 302


def test_login_lock_out_ends_after_the_cool_off(client, user, lockout_after_3, settings):
    from datetime import timedelta

    for _ in range(3):
        login(client, "staff", "wrong")
    assert login(client, "staff", "pw-staff-123").status_code == 429
    settings.AXES_COOLOFF_TIME = timedelta(seconds=0)
    assert login(client, "staff", "pw-staff-123").status_code == 302


def test_failures_below_the_limit_do_not_lock(client, user, lockout_after_3):
    login(client, "staff", "wrong")
    assert login(client, "staff", "pw-staff-123").status_code == 302


# --- API throttling and 401 ------------------------------------------------------------------
@pytest.fixture
def low_rates(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "anon": "2/minute"},
    }


def test_api_throttles_a_user_with_retry_after(token_client, low_rates):
    for _ in range(3):
        assert token_client.get("/api/v1/customers/").status_code == 200
    throttled = token_client.get("/api/v1/customers/")
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert "throttled" in throttled.json()["detail"].lower()


def test_api_throttles_anonymous_clients_by_address(low_rates):
    api = APIClient()
    for _ in range(2):
        assert api.get("/api/v1/customers/", REMOTE_ADDR="10.1.1.1").status_code == 401
    throttled = api.get("/api/v1/customers/", REMOTE_ADDR="10.1.1.1")
    assert throttled.status_code == 429 and "Retry-After" in throttled
    assert api.get("/api/v1/customers/", REMOTE_ADDR="10.1.1.2").status_code == 401


@pytest.mark.parametrize("url", ["/api/v1/", "/api/v1/customers/", "/api/v1/imports/1/"])
def test_api_without_credentials_is_401_with_www_authenticate(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_api_with_a_bad_token_is_401():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.get("/api/v1/customers/").status_code == 401


# --- Health check ------------------------------------------------------------------------------
def test_healthz_says_ok_and_nothing_more(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def database_down(transactional_db, monkeypatch):
    """Point the connection at a database that cannot be reached (the real one keeps running)."""
    connection.close()
    if connection.vendor == "postgresql":
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", str(closed_port))
    else:
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/folder/db.sqlite3")
    yield
    connection.close()
    monkeypatch.undo()


def test_healthz_with_the_database_down_says_unavailable_only(client, database_down, caplog):
    with caplog.at_level(logging.ERROR, logger="customerpanel.views"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    body = response.content.decode()
    for secret in ("127.0.0.1", "5432", "nonexistent", "sqlite", "postgres", "connect"):
        assert secret not in body
    assert "the database does not answer" in caplog.text  # the details go to the log


# --- NUL bytes and invalid values in query parameters ---------------------------------------
PAGE_FILTERS = [
    "/customers/?q={}",
    "/customers/?country={}",
    "/customers/?edited={}",
    "/customers/?after={}",
    "/imports/?before={}",
]
API_FILTERS = [
    "/api/v1/customers/?q={}",
    "/api/v1/customers/?country={}",
    "/api/v1/customers/?edited={}",
    "/api/v1/customers/?cursor={}",
    "/api/v1/customers/?page_size={}",
    "/api/v1/imports/?status={}",
    "/api/v1/imports/?cursor={}",
]
ADMIN_FILTERS = [
    "/admin/customers/customer/?country={}",
    "/admin/customers/customer/?edited={}",
    "/admin/customers/customer/?q={}",
    "/admin/customers/customer/?o={}",
    "/admin/imports/importstate/?status__exact={}",
    "/admin/imports/importstate/?uploaded__exact={}",
    "/admin/imports/importstate/?q={}",
    "/admin/imports/importrejection/?import_state__id__exact={}",
]


@pytest.fixture
def some_rows(make_customer):
    make_customer(country="Chile")
    ImportState.objects.create(
        status=ImportStatus.COMPLETED, source_path="/x.csv", original_name="x.csv"
    )


@pytest.mark.parametrize("url", PAGE_FILTERS + API_FILTERS + ADMIN_FILTERS)
@pytest.mark.parametrize("value", ["%00", "Chile%00", "%00%00abc"])
def test_nul_in_any_filter_is_400(admin_client, some_rows, url, value):
    response = admin_client.get(url.format(value))
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_nul_in_a_parameter_name_is_400(admin_client):
    assert admin_client.get("/customers/?a%00b=1").status_code == 400


@pytest.mark.parametrize("url", PAGE_FILTERS + API_FILTERS + ADMIN_FILTERS)
@pytest.mark.parametrize(
    "value", ["-1", "abc", "99999999999999999999999", "%FF%FE", "x" * 3000, "%27%22%3B--"]
)
def test_invalid_filter_values_are_never_a_500(admin_client, some_rows, url, value):
    response = admin_client.get(url.format(value))
    assert response.status_code < 500, (url, value, response.status_code)


# --- API URLs without the trailing slash, breadcrumbs -------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/customers", "/api/v1/imports", "/api/v1"])
def test_api_url_without_slash_redirects_keeping_the_method(api_client, path):
    response = api_client.get(path + "?q=ada")
    assert response.status_code == 308
    assert response["Location"] == path + "/?q=ada"
    assert api_client.get(path, follow=True).status_code == 200


def test_api_post_without_slash_is_redirected_with_308(api_client):
    response = api_client.post("/api/v1/customers", {"customer_id": "S1"}, format="json")
    assert response.status_code == 308  # clients repeat the POST, with its body, at Location
    assert response["Location"] == "/api/v1/customers/"


def test_unknown_api_url_is_a_json_404(client_logged_in, token_client):
    for caller in (client_logged_in, token_client):
        response = caller.get("/api/v1/nothing-here")
        assert response.status_code == 404
        assert response.json() == {"detail": "No API endpoint at /api/v1/nothing-here."}


def test_unknown_api_url_is_401_for_anonymous_and_bad_tokens(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    bad = client.get("/api/v1/nothing-here", HTTP_AUTHORIZATION="Token not-a-key")
    assert bad.status_code == 401


def test_browsable_api_breadcrumbs_do_not_link_to_not_found(api_client, make_customer):
    customer = make_customer()
    body = api_client.get(f"/api/v1/customers/{customer.pk}/", HTTP_ACCEPT="text/html")
    html = body.content.decode()
    assert body.status_code == 200
    assert 'class="breadcrumb"' in html
    crumbs = html.split('class="breadcrumb"', 1)[1].split("</ul>", 1)[0]
    assert "Not Found" not in crumbs
    assert 'href="/api/"' not in crumbs
    assert 'href="/api/v1/"' in crumbs and 'href="/api/v1/customers/"' in crumbs


# --- Admin list counts ---------------------------------------------------------------------------
def test_admin_list_does_not_present_a_capped_count_as_exact(
    admin_client, make_customer, monkeypatch
):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)  # 3 instead of 10,000 rows to make
    for _ in range(5):
        make_customer()
    html = admin_client.get("/admin/customers/customer/").content.decode()
    assert "More than 3 customers" in html
    assert "4 customers" not in html and "Select all 4" not in html
    assert "more than 3" in html  # the "select all" link


def test_admin_list_under_the_cap_shows_the_exact_count(admin_client, make_customer):
    for _ in range(2):
        make_customer()
    html = admin_client.get("/admin/customers/customer/").content.decode()
    assert "2 customers" in html and "More than" not in html
