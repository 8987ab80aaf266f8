"""Every request is read here first: its query, its headers and its body, bounded and strict.

One parser for every JSON body of /api and /fhir: a value our database or our JSON output could
not hold is refused before anything is parsed into a schema (400), so nothing is half-stored and
nothing we emit later fails to encode. A write is authenticated before its body is even read.
"""

import json
import math
import re
from typing import Any

from flask import current_app, request

from api.errors import Problem

MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53  # beyond it a JSON number is no longer exact in most clients
MAX_NUMBER_CHARS = 32
MAX_IDEMPOTENCY_KEY = 200
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
PROTECTED_PREFIXES = ("/api/v1/", "/fhir")
_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def malformed(detail: str) -> Problem:
    return Problem(400, detail, slug="malformed_json", title="Malformed request body")


def _refuse_constant(name: str) -> Any:
    raise malformed(f"{name} is not a JSON number: send finite numbers only.")


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS or abs(value := int(literal)) > MAX_SAFE_INTEGER:
        raise malformed(f"The number {literal[:20]}… is beyond ±2^53: it cannot be kept exactly.")
    return value


def _parse_float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise malformed(f"The number {literal[:20]}… is out of range.")
    return value


def strict_json(raw: bytes) -> Any:
    """The JSON value in `raw`, refusing what cannot round-trip: non-UTF-8 bytes, nesting deeper
    than 64, NaN, Infinity, numbers out of range, NUL characters and lone surrogates."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise malformed(f"The body is not UTF-8 (byte {error.start}).") from error
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError as error:
        raise malformed(f"The body is nested deeper than {MAX_DEPTH} levels.") from error
    except ValueError as error:
        raise malformed(f"The body is not valid JSON: {error}.") from error
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Depth and characters of a parsed value, walked without recursion."""
    stack: list[tuple[Any, int, tuple]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise malformed(f"The body is nested deeper than {MAX_DEPTH} levels.")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, (*path, key))
                stack.append((child, depth + 1, (*path, key)))
        else:
            stack.extend((child, depth + 1, (*path, i)) for i, child in enumerate(item))


def _check_text(text: str, path: tuple) -> None:
    found = _FORBIDDEN_CHARACTER.search(text)
    if found:
        what = "a NUL character" if found[0] == "\x00" else "a lone surrogate (not Unicode)"
        raise malformed(f"{_path(path)} contains {what}.")


def _path(path: tuple) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.lstrip(".") or "The body"


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def read_body(limit: int) -> bytes:
    """The body, at most `limit` bytes whether sent with Content-Length or chunked (413)."""
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=True)  # werkzeug refused a Content-Length over the limit
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Problem(413, f"The body is larger than {limit // 1024} KiB.")
    data = b"".join(chunks)
    request._cached_data = data  # what get_data() and every later reader return
    return data


def check_request() -> None:
    """before_request, first of all: bounded query and headers, the caller, then the body."""
    for name, value in request.args.items(multi=True):
        if _FORBIDDEN_CHARACTER.search(name) or _FORBIDDEN_CHARACTER.search(value):
            raise Problem(400, f"The query parameter {name[:40]!r} contains a NUL character.")
    _check_idempotency_key()
    if request.method not in WRITE_METHODS:
        return
    if request.path.startswith(PROTECTED_PREFIXES):
        from api.auth import current_actor

        current_actor()  # 401 before anything of the body is read or reported
    if request.path == "/oauth/token":
        _check_form()
        return
    if not is_json(request.mimetype) or not request.path.startswith(PROTECTED_PREFIXES):
        return  # the media type checks answer 415; multipart scans are read by their handler
    raw = read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if raw.strip():
        value = strict_json(raw)
        request._cached_json = (value, value)


def _check_idempotency_key() -> None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return
    key = key.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise Problem(
            400,
            f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters.",
            slug="invalid_idempotency_key",
            title="Invalid Idempotency-Key",
        )
    if key and not _PRINTABLE_ASCII.fullmatch(key):
        raise Problem(
            400,
            "Idempotency-Key takes printable ASCII characters without spaces.",
            slug="invalid_idempotency_key",
            title="Invalid Idempotency-Key",
        )


def _check_form() -> None:
    read_body(current_app.config["MAX_CONTENT_LENGTH"])
    values = list(request.form.values())
    if request.authorization is not None:
        values += [request.authorization.username or "", request.authorization.password or ""]
    if any(_FORBIDDEN_CHARACTER.search(value) for value in values):
        raise Problem(400, "A parameter contains a NUL character.", slug="invalid_request")
