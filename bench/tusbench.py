"""Resumable upload throughput: a 1 GB CSV through gunicorn with the tus protocol.

    .venv/bin/python bench/tusbench.py [--size-mb 1024] [--chunk-mb 64]

Starts gunicorn as the Dockerfile does (gthread, 2 workers, 8 threads) on a free port
of 127.0.0.1, against a fresh SQLite database and MEDIA_ROOT in a temporary folder,
creates an Importer with an API token, then uploads the file in PATCH chunks (each
fsynced by the server before it is acknowledged) and starts its import. Prints the
throughput (MB/s, 1 MB = 10^6 bytes) and the gunicorn workers' peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_csv(path: Path, size: int) -> None:
    rows = "".join(
        f"C{n:07d},Person {n},person{n}@example.com,Company {n % 97},DE\n" for n in range(20_000)
    ).encode()
    with path.open("wb") as out:
        out.write(b"Customer Id,Name,Email,Company,Country\n")
        while out.tell() < size:
            out.write(rows[: size - out.tell()])


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--chunk-mb", type=int, default=64)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    chunk = args.chunk_mb * 1024 * 1024

    with tempfile.TemporaryDirectory(prefix="tusbench-", dir=ROOT / "var") as tmp:
        tmp = Path(tmp)
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "MEDIA_ROOT": str(tmp / "media"),
            "IMPORT_DIR": str(tmp / "imports"),
            "IMPORT_MAX_UPLOAD_BYTES": str(max(size, 5 * 1024**3)),
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-" + "x" * 50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
        run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], **run)
        token = subprocess.run(
            [
                *(PYTHON, "manage.py", "shell", "-c"),
                "from django.contrib.auth.models import Group, User;"
                "from rest_framework.authtoken.models import Token;"
                "u = User.objects.create_user('bench');"
                "u.groups.add(Group.objects.get(name='Importer'));"
                "print(Token.objects.create(user=u).key)",
            ],
            **run,
        ).stdout.split()[-1]
        source = tmp / "big.csv"
        make_csv(source, size)

        port = free_port()
        web = subprocess.Popen(
            [
                *(PYTHON, "-m", "gunicorn", "customerpanel.wsgi", "--bind", f"127.0.0.1:{port}"),
                *("--worker-class", "gthread", "--workers", "2", "--threads", "8"),
                *("--timeout", "120"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            workers = children(web.pid)
            idle_rss = peak_rss_mb(workers)
            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(peak_rss_mb(children(web.pid)))
                    time.sleep(0.2)

            threading.Thread(target=sample, daemon=True).start()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, blocksize=1 << 20)
            tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Token {token}"}
            name = base64.b64encode(b"big.csv").decode()
            conn.request(
                "POST",
                "/api/v1/uploads/",
                headers={**tus, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"},
            )
            created = conn.getresponse()
            created.read()
            assert created.status == 201, created.status
            location = created.getheader("Location").split(str(port), 1)[1]

            started = time.perf_counter()
            offset = 0
            patches = 0
            with source.open("rb") as fp:
                while offset < size:
                    body = fp.read(chunk)
                    conn.request(
                        "PATCH",
                        location,
                        body=body,
                        headers={
                            **tus,
                            "Upload-Offset": str(offset),
                            "Content-Type": "application/offset+octet-stream",
                        },
                    )
                    response = conn.getresponse()
                    response.read()
                    assert response.status == 204, (response.status, offset)
                    offset = int(response.getheader("Upload-Offset"))
                    patches += 1
            elapsed = time.perf_counter() - started
            done.set()

            upload_id = location.rstrip("/").rsplit("/", 1)[1]
            conn.request(
                "POST",
                "/api/v1/imports/",
                body=json.dumps({"upload": upload_id}),
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            queued = conn.getresponse()
            queued.read()
            peak = peak_rss_mb(children(web.pid))
            print(f"file: {size / 1e6:,.0f} MB in {patches} PATCHes of {args.chunk_mb} MiB")
            print(f"upload: {elapsed:.1f} s, {size / 1e6 / elapsed:,.0f} MB/s")
            print(f"gunicorn worker peak RSS: {peak:.0f} MB (idle {idle_rss:.0f} MB)")
            print(f"import from the upload: HTTP {queued.status}")
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=30)


if __name__ == "__main__":
    main()
