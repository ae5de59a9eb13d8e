"""Web latency under load: gunicorn as in production, and a logged-in keep-alive client.

The endpoints are the list below; their paths are filled from a context built from the
loaded table (a deep id, a cursor, a search term, an import id). Edit the list when the
pages change: nothing else in the benchmark knows the URLs.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import quote, urlencode

from importbench import LOG_DIR, PYTHON, ROOT, BenchError


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # str.format()-ed with the context: deep_id, deep_cursor, term, import_id
    kind: str  # which target applies: "list", "search" or "progress"
    htmx: bool = False  # sent with HX-Request: true (the page's partial)
    api: bool = False  # sent with Accept: application/json (not the browsable API)


ENDPOINTS = [
    Endpoint("customers page", "/customers/", "list"),
    Endpoint("customers deep scroll", "/customers/?after={deep_id}", "list", htmx=True),
    Endpoint("customers search", "/customers/?q={term}", "search"),
    Endpoint("API list", "/api/v1/customers/", "list", api=True),
    Endpoint("API deep cursor", "/api/v1/customers/?cursor={deep_cursor}", "list", api=True),
    Endpoint("API search", "/api/v1/customers/?q={term}", "search", api=True),
    Endpoint("import progress", "/imports/{import_id}/", "progress", htmx=True),
]

# p99 targets in ms: (idle, during an import).
TARGETS_MS = {"list": (100, 200), "search": (100, 200), "progress": (50, 50)}


def api_cursor(before_id: int) -> str:
    """A DRF CursorPagination cursor for "ids below before_id" (ordering -id): b64("p=<id>")."""
    return base64.b64encode(urlencode({"p": before_id}).encode()).decode()


def url_context(*, deep_id: int, term: str, import_id: int) -> dict[str, str]:
    return {
        "deep_id": str(deep_id),
        "deep_cursor": quote(api_cursor(deep_id), safe=""),
        "term": quote(term, safe=""),
        "import_id": str(import_id),
    }


# --- The server ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with gthread workers, configured like `make run` (DEBUG off)."""

    def __init__(self, env: dict[str, str], *, workers: int = 2, threads: int = 8):
        self.port = free_port()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / "gunicorn.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "customerpanel.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--worker-class",
                "gthread",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                "120",
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise BenchError("gunicorn did not answer /healthz in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- The client ------------------------------------------------------------------------
def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def login(port: int, username: str, password: str) -> str:
    """Log in through /accounts/login/ like a browser; returns the Cookie header to send."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/accounts/login/")
    response = conn.getresponse()
    page = response.read().decode()
    cookies = _cookies(response)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if response.status != 200 or not token or "csrftoken" not in cookies:
        raise BenchError(f"GET /accounts/login/ gave {response.status} without a CSRF token")
    body = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token[1], "next": "/"}
    )
    conn.request(
        "POST",
        "/accounts/login/",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
        },
    )
    response = conn.getresponse()
    response.read()
    cookies.update(_cookies(response))
    conn.close()
    if response.status != 302 or "sessionid" not in cookies:
        raise BenchError(f"login POST gave {response.status} and no session cookie")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _headers(endpoint: Endpoint, cookie: str) -> dict[str, str]:
    headers = {"Cookie": cookie}
    if endpoint.htmx:
        headers["HX-Request"] = "true"
    if endpoint.api:
        headers["Accept"] = "application/json"
    return headers


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)

    def percentile(self, p: float) -> float | None:
        data = sorted(self.latencies_ms)
        if not data:
            return None
        rank = (len(data) - 1) * p / 100
        low = int(rank)
        high = min(low + 1, len(data) - 1)
        return data[low] + (data[high] - data[low]) * (rank - low)

    @property
    def count(self) -> int:
        return len(self.latencies_ms)


def probe(port: int, cookie: str, endpoint: Endpoint, context: dict[str, str]) -> str | None:
    """None when the endpoint answers 200, else why it cannot be measured."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", endpoint.path.format(**context), headers=_headers(endpoint, cookie))
        response = conn.getresponse()
        response.read()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if response.status == 200:
        return None
    location = response.getheader("Location")
    return f"HTTP {response.status}" + (f" -> {location}" if location else "")


def load(
    port: int,
    cookie: str,
    endpoints: list[Endpoint],
    context: dict[str, str],
    *,
    requests: int,
    concurrency: int,
    time_cap: float,
    warmup: int = 5,
    keep_going=lambda: True,
) -> dict[str, Stats]:
    """`requests` GETs per endpoint from `concurrency` keep-alive connections, round robin.

    Stops at the time cap, or as soon as keep_going() turns false; a response that
    arrives after that is not counted (it was not measured under the same conditions).
    """
    stats = {e.name: Stats() for e in endpoints}
    issued = Counter()
    lock = threading.Lock()
    turn = iter(range(10**12))

    def next_endpoint() -> Endpoint | None:
        with lock:
            start = next(turn)
            for k in range(len(endpoints)):
                endpoint = endpoints[(start + k) % len(endpoints)]
                if issued[endpoint.name] < requests:
                    issued[endpoint.name] += 1
                    return endpoint
            return None

    def worker(deadline: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline and keep_going():
            endpoint = next_endpoint()
            if endpoint is None:
                break
            path = endpoint.path.format(**context)
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=_headers(endpoint, cookie))
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = None
            elapsed_ms = (time.perf_counter() - started) * 1000
            if not keep_going():
                break
            with lock:
                result = stats[endpoint.name]
                result.statuses[status] += 1
                if status is not None:
                    result.latencies_ms.append(elapsed_ms)
                if status != 200:
                    result.errors += 1
        conn.close()

    # Warm both workers' connections and caches; not measured.
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for endpoint in endpoints:
        for _ in range(warmup):
            warm.request("GET", endpoint.path.format(**context), headers=_headers(endpoint, cookie))
            warm.getresponse().read()
    warm.close()

    deadline = time.monotonic() + time_cap
    threads = [threading.Thread(target=worker, args=(deadline,)) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats
