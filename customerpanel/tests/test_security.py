"""Every URL refuses anonymous users, for every HTTP method: a login redirect, 401 or 403.

The walk builds real URLs: each URL pattern of the project is reversed with the primary key of
an object that exists (a customer, an import, a user, ...), so detail URLs reach their views
instead of a 404, and API routes are the router's real paths.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from rest_framework.authtoken.models import Token

from customers.models import Customer
from imports.models import ImportState

pytestmark = pytest.mark.django_db

# Pages anyone may open: the login pages (the site's, the admin's, the browsable API's),
# logging out, and the health check.
PUBLIC = {
    "login",
    "logout",
    "healthz",
    "favicon",
    "admin:login",
    "rest_framework:login",
    "rest_framework:logout",
}
METHODS = ["get", "head", "options", "post", "put", "patch", "delete"]


@pytest.fixture
def objects(user, make_customer, import_dir):
    customer = make_customer()
    state = ImportState.objects.create(
        source_path=str(import_dir / "a.csv"), original_name="a.csv", file_size=10
    )
    Group.objects.create(name="staff")
    Token.objects.create(user=user)
    return {"customer": customer, "import": state}


def walk(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    """(name, pattern, its resolver, the resolver's URL prefix) for every URL pattern."""
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            # Every include() of this project sits at a fixed path.
            assert not entry.pattern.regex.groupindex, entry.pattern
            inner = namespace + (f"{entry.namespace}:" if entry.namespace else "")
            yield from walk(entry, prefix + str(entry.pattern).lstrip("^"), inner)
        elif isinstance(entry, URLPattern):
            yield (namespace + entry.name if entry.name else None), entry, resolver, prefix


def sample_value(kwarg: str, name: str | None, prefix: str, objects) -> str:
    """A value for a URL keyword argument that points at an object that exists."""
    if kwarg == "format":
        return "json"
    if kwarg == "app_label":
        return "customers"
    if kwarg == "content_type_id":
        return str(ContentType.objects.get_for_model(Customer).pk)
    if kwarg == "url":  # the admin's catch-all
        return "nowhere/"
    if prefix.startswith("admin/") and prefix.count("/") == 3:  # admin/<app>/<model>/
        _, app_label, model_name, _ = prefix.split("/")
        model = apps.get_model(app_label, model_name)
        return str(model.objects.values_list("pk", flat=True).first())
    if kwarg in ("pk", "object_id"):
        if name == "upload-detail":  # a resumable upload's UUID
            return "2c5e6a5e-0000-4000-8000-000000000000"
        if (name or "").startswith(("imports:", "import-")):
            return str(objects["import"].pk)
        return str(objects["customer"].pk)
    raise AssertionError(f"no sample value for <{kwarg}> in {name or prefix}")


def real_urls(objects) -> list[tuple[str, str]]:
    urls = []
    for name, pattern, resolver, prefix in walk(get_resolver()):
        if name in PUBLIC:
            continue
        kwargs = {
            kwarg: sample_value(kwarg, name, prefix, objects)
            for kwarg in pattern.pattern.regex.groupindex
        }
        url = resolver._reverse_with_prefix(pattern.callback, "/" + prefix, **kwargs)
        # The URL must reach this very pattern (not a catch-all that happens to match it).
        match = resolve(url)
        assert match.func == pattern.callback, (url, name, match.view_name)
        urls.append((url, name or match.view_name))
    return urls


def refused(response) -> bool:
    if response.status_code in (401, 403):
        return True
    if response.status_code == 302:
        location = urlsplit(response["Location"]).path
        return location in (resolve_url(settings.LOGIN_URL), reverse("admin:login"))
    return False


def test_the_walk_reaches_the_api_and_detail_pages(objects):
    urls = {url for url, _ in real_urls(objects)}
    customer, state = objects["customer"].pk, objects["import"].pk
    expected = {
        "/api/v1/",
        "/api/v1/customers/",
        f"/api/v1/customers/{customer}/",
        "/api/v1/customers.json",
        "/api/v1/imports/",
        f"/api/v1/imports/{state}/",
        f"/api/v1/imports/{state}/cancel/",
        f"/customers/{customer}/edit/",
        f"/imports/{state}/errors.csv",
        f"/admin/customers/customer/{customer}/change/",
        f"/admin/imports/importstate/{state}/delete/",
        "/api/schema/",
    }
    assert expected <= urls, sorted(expected - urls)
    assert len(urls) > 40


def test_anonymous_is_refused_everywhere(client, objects, settings):
    # The walk sends hundreds of anonymous calls: lift the anonymous rate so that every answer
    # is the permission check's (the rate limit has its own tests in test_limits).
    rest = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {
        **rest,
        "DEFAULT_THROTTLE_RATES": {**rest["DEFAULT_THROTTLE_RATES"], "anon": "100000/minute"},
    }
    before = list(Customer.objects.values_list("pk", "email", "manually_edited_at"))
    answers = []
    for url, name in real_urls(objects):
        for method in METHODS:
            response = getattr(client, method)(url)
            if not refused(response):
                answers.append(f"{method.upper()} {url} ({name}): {response.status_code}")
    assert answers == [], "answered an anonymous user:\n" + "\n".join(answers)
    # Nothing was written on the way.
    assert list(Customer.objects.values_list("pk", "email", "manually_edited_at")) == before
    assert ImportState.objects.get().status == objects["import"].status


def test_login_page_and_health_are_public(client):
    assert client.get("/accounts/login/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_manage_py_check_is_clean():
    call_command("check", fail_level="WARNING")
