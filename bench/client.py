"""A minimal HTTP/1.1 keep-alive client over a raw socket, cheap enough not to be the bottleneck.

Requests are pre-formatted bytes; responses are read by Content-Length (or chunked, or until
close). Loopback only: the host is always 127.0.0.1.
"""

import json
import socket
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
TIMEOUT_SECONDS = 30.0
_NO_BODY = {204, 304}


class ConnectionClosed(OSError):
    """The server closed the connection before a whole response came back."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str,
    path: str,
    *,
    port: int,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> bytes:
    """One HTTP/1.1 request, ready to send on a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class Connection:
    """One keep-alive connection to 127.0.0.1:port, reopened when the server closes it."""

    def __init__(self, port: int, timeout: float = TIMEOUT_SECONDS):
        self._address = (HOST, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def open(self) -> None:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def exchange(self, payload: bytes) -> Response:
        """Send one request and read its response; retried once on a stale kept-alive socket."""
        reused = self._sock is not None
        try:
            return self._exchange(payload)
        except ConnectionClosed:
            self.close()
            if not reused:
                raise
        except OSError:
            self.close()
            raise
        return self._exchange(payload)

    def _exchange(self, payload: bytes) -> Response:
        self.open()
        self._sock.sendall(payload)
        status, headers = self._read_head()
        body = self._read_body(status, headers)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, body)

    def _receive(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("connection closed by the server")
        self._buffer += chunk

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0][9:12])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._receive()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _read_body(self, status: int, headers: dict[str, str]) -> bytes:
        if status in _NO_BODY or status < 200:
            return b""
        if "content-length" in headers:
            return self._read_exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        return self._read_until_close()

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_line().split(b";")[0], 16):
            parts.append(self._read_exactly(size))
            self._read_line()
        while self._read_line():  # trailers, up to the empty line
            pass
        return b"".join(parts)

    def _read_until_close(self) -> bytes:
        try:
            while True:
                self._receive()
        except ConnectionClosed:
            data = self._buffer
            self.close()
            return data


def call(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> Response:
    """One request on a connection of its own (setup steps, not measurements)."""
    connection = Connection(port)
    try:
        payload = request_bytes(
            method, path, port=port, headers=headers, body=body, content_type=content_type
        )
        return connection.exchange(payload)
    finally:
        connection.close()
