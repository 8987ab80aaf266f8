"""A TCP proxy on loopback that a test controls: forward, or drop every packet (blackhole)."""

import select
import socket
import threading
from contextlib import suppress


class Proxy:
    """Listens on 127.0.0.1:<port> and forwards to target; `drop()` makes it swallow traffic both
    ways (a partition: connections hang, nothing is refused), `restore()` forwards again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.dropping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def drop(self) -> None:
        self.dropping.set()

    def restore(self) -> None:
        """Forward again; connections opened during the partition stay dead, as after one."""
        self.dropping.clear()

    def close(self) -> None:
        self._stopped.set()
        with suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            with suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.dropping.is_set():
            self._swallow(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        pair = {client: upstream, upstream: client}
        while not self._stopped.is_set():
            try:
                readable, _, _ = select.select(list(pair), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if not self.dropping.is_set():
                        pair[sock].sendall(data)
            except OSError:
                break
        for sock in pair:
            with suppress(OSError):
                sock.close()

    def _swallow(self, client: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                readable, _, _ = select.select([client], [], [], 0.1)
                if readable and not client.recv(65536):
                    break
            except OSError:
                break
        with suppress(OSError):
            client.close()
