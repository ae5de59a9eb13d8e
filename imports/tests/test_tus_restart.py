"""A resumable upload survives the web server being killed mid-chunk (real gunicorn)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import signal
import socket
import time

import pytest
from rest_framework.authtoken.models import Token

from imports import resumable
from imports.models import Upload
from imports.tests.test_web_restart import free_port, start_gunicorn

pytestmark = pytest.mark.django_db(transaction=True)
MB = 1024 * 1024


def tus_request(port: int, token: str, method: str, path: str, body=b"", **headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        method,
        path,
        body=body,
        headers={"Tus-Resumable": "1.0.0", "Authorization": f"Token {token}", **headers},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_killing_gunicorn_mid_chunk_loses_nothing_acknowledged(subprocess_env, user):
    data = b"Customer Id,Email\n" + os.urandom(24 * MB).hex().encode()[: 40 * MB]
    token = Token.objects.create(user=user).key
    port = free_port()
    web = start_gunicorn(subprocess_env, port)
    try:
        name = base64.b64encode(b"big.csv").decode()
        created = tus_request(
            port,
            token,
            "POST",
            "/api/v1/uploads/",
            **{"Upload-Length": str(len(data)), "Upload-Metadata": f"filename {name}"},
        )
        assert created.status == 201
        location = "/api/v1/uploads/" + created.getheader("Location").split("/uploads/")[1]
        octets = {"Content-Type": "application/offset+octet-stream"}
        first = tus_request(
            port, token, "PATCH", location, data[: 10 * MB], **octets, **{"Upload-Offset": "0"}
        )
        assert first.status == 204  # acknowledged: must survive anything from now on

        # The next chunk is half sent when the server (master and workers) is killed.
        rest = data[10 * MB :]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Authorization: Token {token}\r\nContent-Type: application/offset+octet-stream"
                f"\r\nUpload-Offset: {10 * MB}\r\nContent-Length: {len(rest)}\r\n\r\n"
            ).encode()
            + rest[: 12 * MB]
        )
        stored = resumable.upload_path(Upload.objects.get())
        deadline = time.monotonic() + 10
        while stored.stat().st_size <= 10 * MB:  # the server is writing the second chunk
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(timeout=10)
        sock.close()
        assert Upload.objects.get().offset == 10 * MB

        web = start_gunicorn(subprocess_env, port)
        head = tus_request(port, token, "HEAD", location)
        assert head.status == 200
        assert head.getheader("Upload-Offset") == str(10 * MB)
        assert stored.stat().st_size == 10 * MB  # the unacknowledged bytes were cut off
        done = tus_request(
            port, token, "PATCH", location, rest, **octets, **{"Upload-Offset": str(10 * MB)}
        )
        assert done.status == 204
        assert done.getheader("Upload-Offset") == str(len(data))
        assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert Upload.objects.get().is_complete
    finally:
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(timeout=10)
