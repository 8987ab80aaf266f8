"""The outgoing request's hard deadline, against receivers that answer too slowly on purpose."""

import socket
import threading
import time

import pytest

from epu.webhooks import sender


@pytest.fixture
def trickler():
    """A receiver that sends its answer one byte every 0.1 s: each read is quick, so only a
    deadline on the whole request ends it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(connection,), daemon=True).start()

    def trickle(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 204 No Content\r\n" + b"X-Slow: " + b"y" * 1000:
                if stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_deadline(trickler):
    started = time.monotonic()
    outcomes = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(
                sender.post(trickler, b"{}", {}, timeout=0.5, allow_private=True)
            )
        )
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [outcome.error for outcome in outcomes] == ["timeout: no answer within 0.5 s"] * 5
    # The answer would take over 100 s to trickle in; each request ends at its deadline.
    assert time.monotonic() - started < 5


def test_a_short_deadline_is_not_held_behind_a_longer_one_armed_before_it(trickler):
    longer = threading.Thread(
        target=sender.post, args=(trickler, b"{}", {}), kwargs={"timeout": 2, "allow_private": True}
    )
    longer.start()
    time.sleep(0.2)
    shorter = sender.post(trickler, b"{}", {}, timeout=0.3, allow_private=True)
    assert shorter.error == "timeout: no answer within 0.3 s"
    assert shorter.duration_ms < 1500  # not the 2 s of the deadline armed before it
    assert longer.is_alive()
    longer.join(10)
