"""Per-app values the handlers need: settings and keys derived from them."""

from flask import current_app

from epu.settings import Settings


def settings() -> Settings:
    return current_app.extensions["epu.settings"]


def ins_key() -> bytes:
    return current_app.extensions["epu.ins_key"]


def etag_of(body: dict) -> str:
    return f'"v{body["version"]}"'


def with_etag(body: dict, status: int = 200, **headers: str):
    return body, status, {"ETag": etag_of(body), "Cache-Control": "no-cache", **headers}
