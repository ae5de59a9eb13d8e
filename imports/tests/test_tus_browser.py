"""The resumable upload in a real browser: progress, pause, a network drop, a reload.

The browser's upload speed is throttled (Chrome DevTools network conditions), so a
50 MB file takes a few seconds and can be cut mid-way. Screenshots go to
/tmp/shots/uploads_*.png.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imports import resumable
from imports.models import ImportState, Upload
from imports.tests.helpers import csv_text, row

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
SIZE = 50 * 1024 * 1024


@pytest.fixture
def expected_console_errors() -> tuple[str, ...]:
    """A request failing while the network is cut is expected."""
    return ("ERR_INTERNET_DISCONNECTED",)


def big_csv(path: Path, size: int = SIZE) -> Path:
    """A valid customers CSV of about `size` bytes (the rows repeat; the import is not run)."""
    block = csv_text([row(n) for n in range(1, 2001)]).encode()
    header, body = block.split(b"\n", 1)
    with path.open("wb") as out:
        out.write(header + b"\n")
        while out.tell() < size:
            out.write(body)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Network:
    """The page's network through Chrome DevTools: a slow upload link, and cutting it."""

    def __init__(self, page, upload_bytes_per_second: int):
        self.cdp = page.context.new_cdp_session(page)
        self.speed = upload_bytes_per_second
        self.set(offline=False)

    def set(self, *, offline: bool) -> None:
        self.cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": offline,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": self.speed,
            },
        )


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def acknowledged() -> int:
    upload = Upload.objects.first()
    return upload.offset if upload else 0


def settled(quiet: float = 1.0) -> int:
    """The acknowledged offset once it has stopped changing for `quiet` seconds."""
    last, since = acknowledged(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        if (now := acknowledged()) != last:
            last, since = now, time.monotonic()
    return last


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"uploads_{name}.png"), full_page=True)


def test_upload_pause_resume_survive_a_network_drop_then_import(page, import_dir, tmp_path):
    source = big_csv(tmp_path / "customers.csv")
    page.goto("/imports/")
    network = Network(page, 15 * 1024 * 1024)
    page.set_input_files("#upload_file", str(source))
    page.get_by_role("button", name="Upload and review").click()
    bar = page.locator("#upload-bar")
    expect(bar).to_be_visible()

    wait_for(lambda: acknowledged() >= 8 * 1024 * 1024)
    expect(page.locator("#upload-figures")).to_contain_text(re.compile(r"MB/s · .* left"))
    shot(page, "progress")
    # Keyboard: the pause button is reachable and works from the keyboard.
    page.locator("#upload-pause").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#upload-resume")).to_be_focused()
    expect(page.locator("#upload-live")).to_contain_text("paused")
    # The server keeps what arrived of the chunk the pause cut off, then nothing more comes.
    paused_at = settled()
    time.sleep(0.5)
    assert acknowledged() == paused_at < SIZE
    shot(page, "paused")
    page.keyboard.press("Enter")  # Resume
    expect(page.locator("#upload-pause")).to_be_focused()

    wait_for(lambda: acknowledged() >= paused_at + 8 * 1024 * 1024)
    network.set(offline=True)  # the network drops mid-upload
    expect(page.locator("#upload-live")).to_contain_text("Connection lost", timeout=30_000)
    cut_at = acknowledged()
    assert 0 < cut_at < SIZE
    shot(page, "offline")
    network.set(offline=False)

    page.wait_for_url(re.compile(r"/imports/\d+/review/$"), timeout=60_000)
    upload = Upload.objects.get()
    state = ImportState.objects.get()
    assert upload.is_complete and upload.import_state == state
    assert state.original_name == "customers.csv" and state.file_size == source.stat().st_size
    assert sha256(resumable.upload_path(upload)) == sha256(source)


def test_a_reloaded_page_resumes_from_the_servers_offset(page, import_dir, tmp_path):
    source = big_csv(tmp_path / "again.csv")
    page.goto("/imports/")
    Network(page, 15 * 1024 * 1024)
    page.set_input_files("#upload_file", str(source))
    page.get_by_role("button", name="Upload and review").click()
    wait_for(lambda: acknowledged() >= 16 * 1024 * 1024)

    page.reload()  # the upload in flight is lost with the page; what was stored stays
    before = acknowledged()
    expect(page.locator("#upload-previous")).to_contain_text("again.csv")
    shot(page, "reloaded")
    Network(page, 15 * 1024 * 1024)
    page.set_input_files("#upload_file", str(source))
    page.get_by_role("button", name="Upload and review").click()
    expect(page.locator("#upload-live")).to_contain_text(re.compile("Resuming|Uploaded"))

    # It went on from the server's offset: the progress never started from zero again.
    def shown() -> float:
        return float(page.locator("#upload-bar").get_attribute("value") or 0)

    first = wait_for(lambda: shown() or None)
    assert first >= before / SIZE * 100 - 1
    page.wait_for_url(re.compile(r"/imports/\d+/review/$"), timeout=60_000)
    upload = Upload.objects.get()  # one upload, not a second one from the start
    assert sha256(resumable.upload_path(upload)) == sha256(source)


def test_an_upload_survives_the_web_server_restarting(
    browser, subprocess_env, user, client, tmp_path
):
    """Real gunicorn, killed (master and workers) mid-upload and started again on its port."""
    import os
    import signal

    from imports.tests.test_web_restart import free_port, start_gunicorn

    source = big_csv(tmp_path / "restart.csv")
    # Static files straight from the apps: this test's server runs without collectstatic.
    env = {**subprocess_env, "STATIC_MANIFEST": "0", "WHITENOISE_USE_FINDERS": "1"}
    port = free_port()
    web = start_gunicorn(env, port)
    client.force_login(user)  # a session the server finds in the shared database
    context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
    context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": client.cookies["sessionid"].value,
                "url": f"http://127.0.0.1:{port}",
            }
        ]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto("/imports/")
        Network(page, 15 * 1024 * 1024)
        page.set_input_files("#upload_file", str(source))
        page.get_by_role("button", name="Upload and review").click()
        wait_for(lambda: acknowledged() >= 16 * 1024 * 1024)

        os.killpg(web.pid, signal.SIGKILL)  # the web server dies mid-chunk
        web.wait(timeout=10)
        killed_at = acknowledged()
        expect(page.locator("#upload-live")).to_contain_text("not answering", timeout=30_000)
        shot(page, "server_down")
        assert acknowledged() == killed_at < SIZE
        web = start_gunicorn(env, port)  # back on the same address

        page.wait_for_url(re.compile(r"/imports/\d+/review/$"), timeout=90_000)
        upload = Upload.objects.get()
        assert upload.is_complete and upload.import_state == ImportState.objects.get()
        assert sha256(resumable.upload_path(upload)) == sha256(source)
    finally:
        context.close()
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(timeout=10)
