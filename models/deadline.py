"""A client-side deadline on PostgreSQL statements: when the network drops packets or the host
dies, the server never sees its statement_timeout and TCP may wait for minutes. A watchdog
thread shuts the socket of a statement past its deadline, so the request fails (503) instead
of hanging, and the pool drops the dead connection."""

import itertools
import os
import socket
import threading
import time
from contextlib import suppress

TICK = 0.1  # seconds: how late past its deadline a statement may be cut


class Watchdog:
    """Arming and disarming are on every statement's path, so they only set and drop a dict
    entry: the thread looks for deadlines past every TICK instead of being woken per statement
    (a Condition's notify was 6 % of a create's CPU in py-spy)."""

    def __init__(self):
        self._armed: dict[int, tuple[float, int]] = {}  # ticket -> (deadline, socket fd)
        self._tickets = itertools.count()
        threading.Thread(target=self._run, name="epu-statement-deadline", daemon=True).start()

    def arm(self, fd: int, seconds: float) -> int:
        ticket = next(self._tickets)
        self._armed[ticket] = (time.monotonic() + seconds, fd)
        return ticket

    def disarm(self, ticket: int) -> None:
        self._armed.pop(ticket, None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            for ticket, (deadline, fd) in self._armed.copy().items():
                if deadline <= now and self._armed.pop(ticket, None) is not None:
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
    """The process's watchdog, started on first use (in each worker, after any fork)."""
    global _watchdog
    if _watchdog is None:
        with _lock:
            if _watchdog is None:
                _watchdog = Watchdog()
    return _watchdog


def _forget_in_child() -> None:
    global _watchdog
    _watchdog = None  # its thread did not survive the fork


os.register_at_fork(after_in_child=_forget_in_child)
