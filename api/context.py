"""Per-app values the handlers need: settings and keys derived from them."""

from flask import Response, current_app, request

from api.errors import Problem
from epu.prescriptions import ReadMemory
from epu.settings import Settings

MAX_DIGITS = 18  # a version number; a longer one matches nothing


def settings() -> Settings:
    return current_app.extensions["epu.settings"]


def ins_key() -> bytes:
    return current_app.extensions["epu.ins_key"]


def read_memory() -> ReadMemory:
    return current_app.extensions["epu.read_memory"]


def etag_of(body: dict) -> str:
    return f'"v{body["version"]}"'


def with_etag(body: dict, status: int = 200, **headers: str) -> Response:
    """The JSON answer with its ETag. The use cases already return the documented shape, so
    it is encoded once here rather than dumped again through the response schema."""
    response = current_app.json.response(body)
    response.status_code = status
    response.headers.update({"ETag": etag_of(body), "Cache-Control": "no-cache", **headers})
    return response


def versions_in_if_match() -> set[int] | None:
    """Versions named by strong ETags in If-Match (RFC 9110: weak tags never match); None for *."""
    if not request.headers.get("If-Match"):
        raise Problem(428, "Send If-Match with the ETag of the version you are changing.")
    if request.if_match.star_tag:
        return None
    tags = request.if_match.as_set(include_weak=False)
    numbers = (tag[1:] for tag in tags if tag and tag.startswith("v"))
    return {int(n) for n in numbers if n.isascii() and n.isdigit() and len(n) <= MAX_DIGITS}
