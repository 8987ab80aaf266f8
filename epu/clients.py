"""Client software accounts: a prescriber or a nurse (RPPS), or a laboratory (FINESS)."""

import hashlib
import hmac
import secrets

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from epu.actors import LAB, NURSE, PRESCRIBER, Actor
from epu.errors import ValidationFailed
from epu.identifiers import is_finess, is_rpps
from models import Client
from models.base import utcnow
from models.db import read_outside_transaction, writes

# Checked on every request: a plain statement, compiled once, skips the ORM's per-call work.
_ACTIVE_CLIENT = text(
    "SELECT id, role, identifier, name FROM clients"
    " WHERE client_id = :client_id AND revoked_at IS NULL"
)


# Changes with every revocation: an instance that caches active clients compares it, read at
# most every few hundred ms, instead of checking each request's client (the partial index
# ix_clients_revoked keeps it to the revoked clients' few index entries).
_REVOCATIONS = text(
    "SELECT count(revoked_at), max(revoked_at) FROM clients WHERE revoked_at IS NOT NULL"
)


def hash_secret(secret: str) -> str:
    # Secrets are 256 random bits, so a fast hash is enough: no dictionary to attack.
    return hashlib.sha256(secret.encode()).hexdigest()


@writes
def create_client(*, session: Session, role: str, identifier: str, name: str) -> tuple[Client, str]:
    """Register client software; returns it with its secret, shown this one time only."""
    check = {
        PRESCRIBER: (is_rpps, "an RPPS number of 11 digits"),
        LAB: (is_finess, "a FINESS number of 9 digits"),
        NURSE: (is_rpps, "an RPPS number of 11 digits"),
    }
    if role not in check:
        raise ValidationFailed({"role": "must be 'prescriber', 'lab' or 'nurse'"})
    is_valid, expected = check[role]
    if not is_valid(identifier):
        raise ValidationFailed(
            {"identifier": f"{identifier!r} is not {expected} with a valid Luhn key"}
        )
    if not name.strip():
        raise ValidationFailed({"name": "must not be empty"})
    secret = secrets.token_urlsafe(32)
    client = Client(
        client_id=f"epu-{role}-{secrets.token_hex(8)}",
        secret_hash=hash_secret(secret),
        role=role,
        identifier=identifier,
        name=name.strip(),
    )
    session.add(client)
    session.commit()
    return client, secret


def authenticate(*, session: Session, client_id: str, secret: str) -> Client | None:
    """The active client with this id and secret, compared in constant time."""
    client = session.scalar(select(Client).where(Client.client_id == client_id))
    expected = client.secret_hash if client else hash_secret("")
    matches = hmac.compare_digest(expected, hash_secret(secret))
    if client is None or not matches or client.revoked_at is not None:
        return None
    return client


def active_actor(*, session: Session, client_id: str) -> Actor | None:
    """The caller behind a token, or None once its client is revoked (read outside of a
    transaction where it can: models.db.read_outside_transaction)."""
    read_outside_transaction(session)
    row = session.connection().execute(_ACTIVE_CLIENT, {"client_id": client_id}).one_or_none()
    return Actor(*row) if row else None


def revocations(*, session: Session) -> tuple:
    """How many clients have been revoked, and the last revocation: changes when one more is."""
    read_outside_transaction(session)
    return tuple(session.connection().execute(_REVOCATIONS).one())


def list_clients(*, session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.id)))


@writes
def revoke_client(*, session: Session, client_id: str) -> bool:
    client = session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None:
        return False
    if client.revoked_at is None:
        client.revoked_at = utcnow()
    session.commit()
    return True
