"""The printable ordonnance, rendered once per version (and per name printed) and kept a while:
its worst case costs seconds of CPU, so one client renders one at a time."""

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from api.errors import Problem

CACHE_SECONDS = 600
CACHE_BYTES = 64 * 1024 * 1024


class RenderCache:
    def __init__(self, max_bytes: int = CACHE_BYTES, seconds: float = CACHE_SECONDS):
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes, self._max_bytes, self._seconds = 0, max_bytes, seconds
        self._lock = threading.Lock()
        self._rendering: set[int] = set()

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()

    def get_or_render(self, key: str, client: int, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] > time.monotonic():
                self._items.move_to_end(key)
                return found[1]
            if client in self._rendering:
                raise Problem(
                    429,
                    "An ordonnance of yours is being rendered: retry in a moment.",
                    headers={"Retry-After": "2"},
                )
            self._rendering.add(client)
        try:
            document = render()
        finally:
            with self._lock:
                self._rendering.discard(client)
        self._put(key, document)
        return document

    def _put(self, key: str, document: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= len(old[1]) if old else 0
            self._items[key] = (time.monotonic() + self._seconds, document)
            self._bytes += len(document)
            while self._bytes > self._max_bytes and self._items:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= len(evicted)
