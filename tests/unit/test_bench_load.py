"""The bench's load loop moves each thread to a new connection every N requests, and loses
no request doing so (bench/README.md, "The load generator")."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import load
from bench.client import request_bytes


class _Counting(BaseHTTPRequestHandler):
    """Counts the connections that carried at least one request (one handler per connection;
    a spare opened ahead and never used carries none)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn
    connections = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if not getattr(self, "counted", False):
            self.counted = True
            with self.lock:
                type(self).connections += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_server():
    _Counting.connections = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _measure(port: int, reconnect_every: int) -> load.Measurement:
    call = load.Call(request_bytes("GET", "/", port=port), frozenset({200}))
    bounds = load.Bounds(seconds=30, max_requests=2 * 20, reconnect_every=reconnect_every)
    return load.run(port, lambda index: iter([call] * 20), 2, bounds)


@pytest.mark.parametrize(("every", "connections"), [(0, 2), (5, 2 * 4)])
def test_each_thread_moves_to_a_new_connection_every_n_requests(
    counting_server, every, connections
):
    measurement = _measure(counting_server.server_address[1], every)

    assert measurement.requests == 40
    assert measurement.errors == 0
    assert _Counting.connections == connections
