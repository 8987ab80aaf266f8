"""A buffering front for gunicorn, as `make run` starts it: slow clients cost it a coroutine,
not a gunicorn thread.

gunicorn's threads read a request's headers and body with blocking reads and no deadline: a few
connections sending one byte every two seconds hold every thread. This front reads each request
whole, within deadlines, before a worker sees it (as nginx or HAProxy do in production), hands
it to gunicorn over a Unix socket with its length known, and relays the answer.

    python -m api.front --listen 127.0.0.1:8000 --socket instance/gunicorn.sock -- gunicorn ...
"""

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys

HEAD_DEADLINE = 10.0  # seconds to send the request line and headers
BODY_DEADLINE = 30.0  # seconds to send the body
WRITE_DEADLINE = 30.0  # seconds for a client to take each part of the answer
MAX_HEAD = 32 * 1024
MAX_BODY = 5 * 1024 * 1024 + 64 * 1024  # a photo of the ordonnance and its form fields
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"te",
    b"upgrade",
    b"proxy-connection",
}


class Refused(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def _refusal(status: str) -> bytes:
    body = f'{{"title": "{status[4:]}", "status": {status[:3]}}}'.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    request_line, headers = lines[0], []
    if len(request_line.split(b" ")) != 3:
        raise Refused("400 Bad Request")
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise Refused("400 Bad Request")
        headers.append((name.lower(), value.strip()))
    return request_line, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as error:
            raise Refused("400 Bad Request") from error
        if len(body) + size > MAX_BODY:
            raise Refused("413 Content Too Large")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers, dropped
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise Refused("400 Bad Request")


async def _read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[bytes, bytes]
) -> bytes:
    if headers.get(b"expect", b"").lower() == b"100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return await _read_chunked(reader)
    try:
        length = int(headers.get(b"content-length", b"0"))
    except ValueError as error:
        raise Refused("400 Bad Request") from error
    if length < 0:
        raise Refused("400 Bad Request")
    if length > MAX_BODY:
        raise Refused("413 Content Too Large")
    return await reader.readexactly(length) if length else b""


class Front:
    def __init__(self, upstream_socket: str):
        self.upstream_socket = upstream_socket

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("",))[0]
        try:
            request = await self._read_request(reader, writer, peer)
            await self._relay(request, writer)
        except Refused as refused:
            with contextlib.suppress(ConnectionError, TimeoutError):
                writer.write(_refusal(refused.status))
                await asyncio.wait_for(writer.drain(), 1)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_DEADLINE)
        except asyncio.LimitOverrunError as error:
            raise Refused("431 Request Header Fields Too Large") from error
        except TimeoutError as error:
            raise Refused("408 Request Timeout") from error
        request_line, headers = _parse_head(head)
        named = dict(headers)
        try:
            body = await asyncio.wait_for(_read_body(reader, writer, named), BODY_DEADLINE)
        except TimeoutError as error:
            raise Refused("408 Request Timeout") from error
        forwarded = [request_line]
        forwarded += [name + b": " + value for name, value in headers if name not in HOP_BY_HOP]
        forwarded += [
            b"Content-Length: " + str(len(body)).encode(),
            b"X-Forwarded-For: " + peer.encode(),
            b"Connection: close",
        ]
        return b"\r\n".join(forwarded) + b"\r\n\r\n" + body

    async def _relay(self, request: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream_socket)
        except OSError as error:
            raise Refused("502 Bad Gateway") from error
        try:
            up_writer.write(request)
            await up_writer.drain()
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), WRITE_DEADLINE)
        finally:
            up_writer.close()


async def serve(host: str, port: int, upstream_socket: str, stop: asyncio.Event) -> None:
    front = Front(upstream_socket)
    server = await asyncio.start_server(front.handle, host, port, limit=MAX_HEAD, backlog=2048)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000")
    parser.add_argument("--socket", required=True, help="the Unix socket gunicorn binds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- gunicorn and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    gunicorn = subprocess.Popen(command) if command else None  # noqa: S603 - our own command line

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if gunicorn is not None:
            loop.create_task(_watch(gunicorn, stop))
        await serve(host or "127.0.0.1", int(port), args.socket, stop)

    try:
        asyncio.run(run())
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.terminate()
            try:
                gunicorn.wait(30)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
    return 0


async def _watch(process: subprocess.Popen, stop: asyncio.Event) -> None:
    while process.poll() is None and not stop.is_set():
        await asyncio.sleep(0.5)
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
