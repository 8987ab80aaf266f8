"""A real HTTP receiver on loopback, started by the tests: it records what it gets and answers
what each path is told to (a status, after an optional delay)."""

import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def verifies_with(self, secret: str) -> bool:
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class Behaviour:
    status: int = 204
    delay: float = 0.0
    body: bytes = b""
    hold: threading.Event | None = None  # answer only once the test sets it
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    arrivals: list[str] = field(default_factory=list)  # every request, when it arrives
    open: Counter = field(default_factory=Counter)  # requests being answered, per path
    most_open: Counter = field(default_factory=Counter)  # the most at once, per path
    behaviours: dict[str, Behaviour] = field(default_factory=lambda: defaultdict(Behaviour))
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def on(self, path: str, status: int = 204, **behaviour) -> None:
        self.behaviours[path] = Behaviour(status, **behaviour)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if item.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:
        """The requests to `path` once there are at least `count` (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.at(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.at(path))} requests to {path} after {timeout}s, "
                        f"expected {count}"
                    )
                self.arrived.wait(min(left, 0.2))
        return self.at(path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(port: int = 0, receiver: Receiver | None = None) -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            this = holder["receiver"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with this.lock:
                this.arrivals.append(self.path)
                this.open[self.path] += 1
                this.most_open[self.path] = max(this.most_open[self.path], this.open[self.path])
            behaviour = this.behaviours[self.path]
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if behaviour.hold is not None:
                behaviour.hold.wait(4)  # under the dispatcher's 5 s timeout
            # Recorded when answered with a 2xx, as a receiver that processes it would; no
            # longer open once answering, as the sender may start its next request then.
            with this.lock:
                this.open[self.path] -= 1
                if 200 <= behaviour.status < 300:
                    this.received.append(Received(self.path, dict(self.headers), body))
                else:
                    this.refused.append(self.path)
            self.send_response(behaviour.status)
            self.send_header("Content-Length", str(len(behaviour.body)))
            self.send_header("Connection", "close")
            for name, value in behaviour.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(behaviour.body)
            with this.arrived:
                this.arrived.notify_all()

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", port), Handler)
    if receiver is None:
        receiver = Receiver(server)
    else:
        receiver.server = server
    holder["receiver"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


class _Server(ThreadingHTTPServer):
    # Read by the constructor's listen(): the default backlog of 5 resets connections when the
    # dispatcher's workers connect at once, and each reset is a failed delivery and a retry.
    request_queue_size = 128
    daemon_threads = True
