"""Slow clients against the front `make run` starts: 200 connections sending their headers or
their body a byte at a time leave every other client served."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.e2e.support import GUNICORN, REPO, Server, free_port

SLOW_HEADERS, SLOW_BODIES = 150, 50
DEADLINE = 10  # per ordinary request: generous, it bounds the test, it measures nothing


@pytest.fixture
def fronted_server(settings, tmp_path):
    """The service as `make run` starts it: api.front before gunicorn (1 worker, 4 threads)."""
    port, sock = free_port(), str(tmp_path / "gunicorn.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPU_")}
    env.update(
        EPU_DATABASE_URL=settings.database_url,
        EPU_SECRET_KEY=settings.secret_key,
        EPU_INSTANCE_DIR=str(tmp_path),
    )
    command = [sys.executable, "-m", "api.front", "--listen", f"127.0.0.1:{port}"]
    command += ["--socket", sock, "--", str(GUNICORN), "--bind", f"unix:{sock}"]
    command += ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
    command += ["--no-control-socket", "wsgi:app"]
    log_path = tmp_path / "front.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server("front", f"http://127.0.0.1:{port}", process, log_path)
    server.wait_until_healthy()
    yield server
    server.stop()


def open_slow(port: int, count: int, first: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(first)
        sockets.append(conn)
    return sockets


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """One more byte on every connection every second, never finishing."""
    while not stop.wait(1):
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.sendall(b"a")


def test_slow_headers_and_slow_bodies_leave_other_clients_served(fronted_server, register):
    port = int(fronted_server.url.rsplit(":", 1)[1])
    prescriber = register(fronted_server, "prescriber")
    slow = open_slow(port, SLOW_HEADERS, b"GET /api/v1/prescriptions HTTP/1.1\r\nX-Slow: ")
    slow += open_slow(
        port,
        SLOW_BODIES,
        b"POST /api/v1/scans HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{",
    )
    stop = threading.Event()
    feeder = threading.Thread(target=trickle, args=(slow, stop), daemon=True)
    feeder.start()
    try:
        time.sleep(1)  # every slow connection is open and sending
        statuses = [
            requests.get(
                fronted_server.url + "/api/v1/prescriptions",
                headers=prescriber.headers,
                timeout=DEADLINE,
            ).status_code
            for _ in range(20)
        ]
        created = requests.post(
            fronted_server.url + "/api/v1/prescriptions",
            json={
                "patient": {"sex": "female", "birth_date": "1969-05-01"},
                "lines": [{"text": "Ferritine"}],
            },
            headers=prescriber.headers,
            timeout=DEADLINE,
        )
    finally:
        stop.set()
        feeder.join(5)
        for conn in slow:
            conn.close()
    assert statuses == [200] * 20
    assert created.status_code == 201, created.text


def test_the_front_counts_chunked_bodies_and_answers_408_to_a_stalled_request(fronted_server):
    port = int(fronted_server.url.rsplit(":", 1)[1])
    big = requests.post(
        fronted_server.url + "/api/v1/scans",
        data=(b"x" * 65536 for _ in range(100)),  # 6.4 MB, chunked
        headers={"Content-Type": "application/json"},
        timeout=DEADLINE,
    )
    assert big.status_code == 413
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE + 5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # and nothing more
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 408")
