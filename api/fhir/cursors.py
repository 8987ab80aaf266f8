"""Paging cursors: opaque, encrypted and authenticated, so that what a search was about (a
patient, given in the body of POST _search) can go on in a GET `next` link without ever
appearing in a URL."""

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from api.context import settings
from api.fhir.params import bad

MAX_AGE_SECONDS = 24 * 3600


def _fernet() -> Fernet:
    fernet = current_app.extensions.get("epu.fhir_cursor")
    if fernet is None:
        key = base64.urlsafe_b64encode(settings().derived_key("fhir-search-cursor"))
        fernet = current_app.extensions["epu.fhir_cursor"] = Fernet(key)
    return fernet


def seal(state: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(state, separators=(",", ":")).encode()).decode()


def opened(cursor: str | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        state = json.loads(_fernet().decrypt(cursor.encode(), ttl=MAX_AGE_SECONDS))
    except (InvalidToken, ValueError, UnicodeError) as error:
        detail = "_cursor is not one this server gave (or it is over a day old)."
        raise bad(detail, "_cursor") from error
    if not isinstance(state, dict):
        raise bad("_cursor is not one this server gave.", "_cursor")
    return state
