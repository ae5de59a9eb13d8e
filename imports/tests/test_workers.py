"""The import workers' register: rows written by real worker processes, the panel and the API."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from imports import services
from imports.models import ImportState, ImportStatus, Worker, WorkerState
from imports.roles import VIEWER
from imports.tests import drill
from imports.tests.helpers import row, write_csv
from imports.workers import Heartbeat, worker_beat, worker_register, worker_stop

WORKERS_API = "/api/v1/workers/"


def seen(worker: Worker, seconds_ago: float) -> Worker:
    Worker.objects.filter(pk=worker.pk).update(
        last_seen=timezone.now() - timedelta(seconds=seconds_ago)
    )
    worker.refresh_from_db()
    return worker


@pytest.fixture
def queued(import_dir):
    path = write_csv(import_dir / "people.csv", [row(n) for n in range(1, 4)])
    return services.import_enqueue_path(path.name)


# --- The register -----------------------------------------------------------------------
@pytest.mark.django_db
def test_a_worker_registers_beats_and_stops(queued):
    worker = worker_register("box-a:4242")
    assert (worker.host, worker.pid, worker.state) == ("box-a", 4242, WorkerState.IDLE)
    assert worker.status == "idle"

    worker_beat(worker, working_on=queued)
    worker.refresh_from_db()
    assert (worker.state, worker.current_import_id) == (WorkerState.WORKING, queued.pk)

    worker_stop(worker)
    worker.refresh_from_db()
    assert (worker.status, worker.current_import) == ("stopped", None)


@pytest.mark.django_db
def test_a_silent_worker_is_lost_and_forgotten_after_a_day(settings):
    settings.IMPORT_STALE_AFTER_SECONDS = 30
    quiet = seen(worker_register("box-a:1"), 31)
    assert quiet.status == "lost"
    assert seen(quiet, 29).status == "idle"
    stopped = worker_register("box-a:2")
    worker_stop(stopped)
    assert seen(stopped, 3600).status == "stopped"  # said goodbye: never lost

    seen(quiet, 25 * 3600)
    assert list(Worker.objects.remembered()) == [stopped]
    worker_register("box-b:3")  # a starting worker deletes the forgotten ones
    assert not Worker.objects.filter(pk=quiet.pk).exists()


@pytest.mark.django_db
def test_a_restarted_worker_with_the_same_name_starts_afresh(queued):
    old = worker_register("box-a:7")
    worker_beat(old, working_on=queued)
    seen(old, 3600)
    new = worker_register("box-a:7")
    assert new.pk == old.pk
    assert (new.state, new.current_import) == (WorkerState.IDLE, None)
    assert timezone.now() - new.started_at < timedelta(seconds=5)


@pytest.mark.django_db
def test_heartbeats_are_throttled_but_a_new_import_is_written_at_once(queued):
    heartbeat = Heartbeat("box-a:9", every=3600)
    seen(heartbeat.worker, 100)
    heartbeat.beat()  # nothing changed, within the interval: no write
    assert Worker.objects.get().last_seen < timezone.now() - timedelta(seconds=90)
    heartbeat.beat(queued)
    assert Worker.objects.get().current_import_id == queued.pk
    Worker.objects.all().delete()  # forgotten meanwhile: the next beat writes it again
    heartbeat.beat()
    assert Worker.objects.get().name == "box-a:9"


# --- The panel and the API ----------------------------------------------------------------
@pytest.mark.django_db
def test_the_imports_page_shows_each_worker_and_its_import(client, make_user, queued, settings):
    settings.IMPORT_STALE_AFTER_SECONDS = 30
    busy = worker_register("box-a:11")
    worker_beat(busy, working_on=queued)
    worker_register("box-b:12")
    seen(worker_register("box-c:13"), 120)
    client.force_login(make_user("vera", VIEWER))

    page = client.get("/imports/").content.decode()
    assert 'id="workers-title"' in page
    assert f'href="/imports/{queued.pk}/">#{queued.pk} people.csv</a>' in page
    for host, label in (("box-a", "Working"), ("box-b", "Idle"), ("box-c", "Lost")):
        cells = page.split(f"<code>{host}</code>", 1)[1].split("</tr>", 1)[0]
        assert label in cells, host

    panel = client.get("/imports/workers/", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert 'id="import-workers"' in panel.content.decode()
    assert "<h1>" not in panel.content.decode()
    plain = client.get("/imports/workers/")  # no htmx: the page, at its workers panel
    assert plain.status_code == 302 and plain["Location"] == "/imports/#workers-title"


@pytest.mark.django_db
def test_no_worker_says_how_to_start_one(client_logged_in):
    page = client_logged_in.get("/imports/").content.decode()
    assert "No import worker has run in the last day" in page


@pytest.mark.django_db
def test_workers_need_the_view_permission(client, make_user, api_client):
    worker_register("box-a:1")
    client.force_login(make_user("nobody"))
    assert client.get("/imports/workers/", headers={"HX-Request": "true"}).status_code == 403
    assert Client().get("/imports/workers/").status_code == 302  # to the login page
    assert Client().get(WORKERS_API).status_code == 401
    from rest_framework.test import APIClient

    no_role = APIClient()
    no_role.force_authenticate(make_user("nobody2"))
    assert no_role.get(WORKERS_API).status_code == 403
    assert api_client.post(WORKERS_API, {}).status_code in (403, 405)


@pytest.mark.django_db
def test_the_api_lists_workers(api_client, queued, settings):
    settings.IMPORT_STALE_AFTER_SECONDS = 30
    busy = worker_register("box-a:11")
    worker_beat(busy, working_on=queued)
    seen(worker_register("box-c:13"), 120)
    seen(worker_register("box-d:14"), 2 * 86400)  # forgotten

    listed = api_client.get(WORKERS_API).json()["results"]
    by_name = {w["name"]: w for w in listed}
    assert set(by_name) == {"box-a:11", "box-c:13"}
    assert by_name["box-a:11"]["status"] == "working"
    assert by_name["box-a:11"]["current_import_id"] == queued.pk
    assert by_name["box-a:11"]["current_import"].endswith(f"/api/v1/imports/{queued.pk}/")
    assert by_name["box-c:13"]["status"] == "lost"
    one = api_client.get(f"{WORKERS_API}{busy.pk}/").json()
    assert one["host"] == "box-a" and one["pid"] == 11


# --- Real worker processes ------------------------------------------------------------------
def wait_until(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_worker_process_registers_works_and_says_goodbye(subprocess_env, import_dir):
    write_csv(import_dir / "many.csv", [row(n) for n in range(1, 400)])
    env = {**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.2", "IMPORT_BATCH_SIZE": "20"}
    proc = drill.worker(env)
    try:
        assert wait_until(lambda: Worker.objects.filter(pid=proc.pid).exists()), "no register"
        state = services.import_enqueue_path("many.csv")
        assert wait_until(
            lambda: Worker.objects.filter(pid=proc.pid, current_import=state).exists()
        ), "never shown working on its import"
        assert Worker.objects.get(pid=proc.pid).status == "working"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    worker = Worker.objects.get(pid=proc.pid)
    assert (worker.status, worker.current_import) == ("stopped", None)
    assert ImportState.objects.get(pk=state.pk).status in (
        ImportStatus.QUEUED,
        ImportStatus.COMPLETED,
    )


def test_a_killed_worker_shows_as_lost(subprocess_env, settings):
    settings.IMPORT_STALE_AFTER_SECONDS = 1
    proc = drill.worker(subprocess_env)
    try:
        assert wait_until(lambda: Worker.objects.filter(pid=proc.pid).exists()), "no register"
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: Worker.objects.get(pid=proc.pid).status == "lost", timeout=10)


# --- In a browser ---------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_workers_panel_in_a_browser(page, import_dir, settings):
    from pathlib import Path

    from playwright.sync_api import expect

    settings.IMPORT_STALE_AFTER_SECONDS = 30
    state = services.import_enqueue_path(
        write_csv(import_dir / "customers-2026.csv", [row(n) for n in range(1, 4)]).name
    )
    worker_beat(worker_register("worker-1.internal:4101"), working_on=state)
    worker_register("worker-2.internal:4102")
    seen(worker_register("worker-3.internal:4103"), 300)

    page.goto("/imports/")
    panel = page.locator("#import-workers")
    expect(panel.get_by_role("row")).to_have_count(4)
    working = panel.get_by_role("row").filter(has_text="worker-1.internal")
    expect(working).to_contain_text("Working")
    working.get_by_role("link", name=f"#{state.pk} customers-2026.csv").click()
    page.wait_for_url(f"**/imports/{state.pk}/")
    page.go_back()
    expect(panel.get_by_role("row").filter(has_text="worker-3.internal")).to_contain_text("Lost")

    # The panel refreshes itself: a worker that stops shows as stopped without a reload.
    worker_stop(Worker.objects.get(name="worker-2.internal:4102"))
    expect(panel.get_by_role("row").filter(has_text="worker-2.internal")).to_contain_text(
        "Stopped", timeout=12_000
    )
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    page.locator("#workers-title").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "imports_workers.png"), full_page=True)
