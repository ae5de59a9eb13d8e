"""Every URL pattern refuses anonymous users (login redirect or 401/403)."""

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "healthz", "favicon"}
SAMPLE_KWARGS = {
    "pk": "1",
    "id": "1",
    "object_id": "1",
    "app_label": "customers",
    "content_type_id": "1",
    "format": "json",
    "uidb64": "MQ",
    "token": "x",
}


def walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def concrete(route: str) -> str:
    import re

    route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\.", ".")
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_KWARGS.get(m.group(1), "1"), route)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SAMPLE_KWARGS.get(m.group(1), "1"), route)
    return "/" + route


def all_routes():
    return sorted(set(walk(get_resolver().url_patterns)))


def test_there_are_routes_to_walk():
    assert len(all_routes()) > 20


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_is_refused_everywhere(client, method):
    checked = 0
    for route, name in all_routes():
        if name in PUBLIC:
            continue
        url = concrete(route)
        response = getattr(client, method)(url)
        ok = response.status_code in (401, 403) or (
            response.status_code == 302 and "/login/" in response["Location"]
        )
        # 404/405 only where routing itself refuses before any data is touched.
        assert ok or (
            response.status_code in (404, 405) and not response.content.strip().startswith(b'{"id"')
        ), f"{method.upper()} {url} ({name}) answered {response.status_code} to an anonymous user"
        checked += 1
    assert checked > 20


def test_login_page_and_health_are_public(client):
    assert client.get("/accounts/login/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_manage_py_check_is_clean():
    call_command("check", fail_level="WARNING")
