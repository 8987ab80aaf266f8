"""A client-side deadline on PostgreSQL statements: when the network drops packets or the host
dies, the server never sees its statement_timeout and TCP may wait for minutes. A watchdog
thread shuts the socket of a statement past its deadline, so the request fails (503) instead
of hanging, and the pool drops the dead connection."""

import heapq
import itertools
import os
import socket
import threading
import time
from contextlib import suppress


class Watchdog:
    def __init__(self):
        self._heap: list[tuple[float, int, int]] = []
        self._armed: dict[int, int] = {}  # ticket -> socket fd
        self._tickets = itertools.count()
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="epu-statement-deadline", daemon=True).start()

    def arm(self, fd: int, seconds: float) -> int:
        ticket = next(self._tickets)
        with self._wake:
            self._armed[ticket] = fd
            heapq.heappush(self._heap, (time.monotonic() + seconds, ticket, fd))
            self._wake.notify()
        return ticket

    def disarm(self, ticket: int) -> None:
        with self._wake:
            self._armed.pop(ticket, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                if timeout is None or timeout > 0:
                    self._wake.wait(timeout)
                    continue
                _, ticket, fd = heapq.heappop(self._heap)
                self._armed.pop(ticket, None)
            _shut(fd)


def _shut(fd: int) -> None:
    with suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


_watchdog: Watchdog | None = None
_lock = threading.Lock()


def watchdog() -> Watchdog:
    global _watchdog
    with _lock:
        if _watchdog is None:
            _watchdog = Watchdog()
        return _watchdog
