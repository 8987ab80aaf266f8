"""Webhook secrets: generated, kept encrypted at rest, and used to sign (Standard Webhooks)."""

import base64
import os
import secrets
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from standardwebhooks.webhooks import Webhook

from epu.settings import Settings

KEY_PURPOSE = "webhook-secret-encryption"
_AAD = b"epu webhook secret v1"
_VERSION = "v1:"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def encryption_key(settings: Settings) -> bytes:
    return settings.derived_key(KEY_PURPOSE)


def encrypt(secret: str, key: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _AAD)
    return _VERSION + base64.b64encode(nonce + sealed).decode()


def decrypt(stored: str, key: bytes) -> str:
    if not stored.startswith(_VERSION):
        raise ValueError("unknown webhook secret format")
    raw = base64.b64decode(stored.removeprefix(_VERSION))
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], _AAD).decode()
    except InvalidTag as error:
        raise ValueError("webhook secret cannot be decrypted: EPU_SECRET_KEY changed?") from error


def signature(secrets_in_use: list[str], message_id: str, at: datetime, body: str) -> str:
    """The webhook-signature header: one `v1,...` per secret in use (two while rotating)."""
    return " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets_in_use)
