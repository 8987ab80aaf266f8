"""Reading the audit trail, and the retention commands (expire, purge)."""

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from epu.actors import Actor
from epu.errors import PrescriptionNotFound
from epu.prescriptions import apply_expiry, expire_now, find, parse_code
from epu.statuses import ACTIVE, CLOSED
from models import Event, IdempotencyRecord, Line, Prescription
from models.base import utcnow
from models.db import writes

# What a prescriber still sees when the patient objected to sharing the execution.
_STATUS_ONLY_EVENTS = {"created", "cancelled", "expired", "completed"}
# ... and what the prescriber must answer, or be told was done without its agreement.
_PROPOSAL_EVENTS = {
    "proposed",
    "proposal_withdrawn",
    "proposal_superseded",
    "proposal_accepted",
    "proposal_refused",
    "applied_urgent",
    "applied_prescriber_unavailable",
}


def history(*, session: Session, actor: Actor, code: str) -> dict[str, Any]:
    """Events oldest first, for the owner prescriber or a laboratory that holds or held it."""
    prescription = find(session, parse_code(code), with_lines=False)
    if prescription is None or not _may_read_history(session, prescription, actor):
        session.rollback()
        raise PrescriptionNotFound()
    if prescription.status == ACTIVE and prescription.expires_at <= utcnow():
        expire_now(session=session, code=prescription.code)
    events = session.scalars(
        select(Event).where(Event.prescription_id == prescription.id).order_by(Event.id)
    )
    hidden = prescription.sharing_withheld and actor.is_prescriber
    items = [
        _event(event, masked=_masked(event, actor, hidden))
        for event in events
        if not hidden or event.type in _STATUS_ONLY_EVENTS | _PROPOSAL_EVENTS
    ]
    session.rollback()
    return {"items": items}


def _may_read_history(session: Session, prescription: Prescription, actor: Actor) -> bool:
    if actor.is_prescriber:
        return prescription.prescriber_id == actor.client_pk
    if prescription.lab_id == actor.client_pk:
        return True
    return bool(
        session.scalar(
            select(
                exists().where(
                    Event.prescription_id == prescription.id,
                    Event.actor_client_id == actor.client_pk,
                    Event.type == "taken",
                )
            )
        )
    )


def _masked(event: Event, actor: Actor, execution_hidden: bool) -> bool:
    """A laboratory is never named to another laboratory, nor to a prescriber it is hidden from."""
    if event.actor_role != "lab":
        return False
    return execution_hidden or (actor.is_lab and event.actor_client_id != actor.client_pk)


def _event(event: Event, *, masked: bool) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "type": event.type,
        "actor": {
            "role": event.actor_role,
            "identifier": None if masked else event.actor_identifier,
            "name": None if masked else event.actor_name,
        },
        "detail": event.detail,
    }


@writes
def expire_due(*, session: Session, batch_size: int = 500) -> int:
    """Mark every active prescription past its validity as expired; returns how many."""
    total = 0
    while True:
        now = utcnow()
        batch = list(
            session.scalars(
                select(Prescription)
                .where(Prescription.status == ACTIVE, Prescription.expires_at <= now)
                .order_by(Prescription.expires_at)  # ix_prescriptions_active_expires, in order
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
        )
        for prescription in batch:
            apply_expiry(session, prescription, now)
        session.commit()
        total += len(batch)
        if len(batch) < batch_size:
            return total


@writes
def purge(*, session: Session, older_than_days: int, batch_size: int = 500) -> dict[str, int]:
    """Delete closed prescriptions untouched for that long, with everything attached to them."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    counts = {"prescriptions": 0, "lines": 0, "events": 0, "idempotency_records": 0}
    while True:
        ids = list(
            session.scalars(
                select(Prescription.id)
                .where(Prescription.status.in_(CLOSED), Prescription.updated_at < cutoff)
                .order_by(Prescription.updated_at)  # ix_prescriptions_closed_updated, in order
                .limit(batch_size)
            )
        )
        if not ids:
            session.rollback()
            return counts
        for model, key in (
            (IdempotencyRecord, "idempotency_records"),
            (Event, "events"),
            (Line, "lines"),
        ):
            result = session.execute(delete(model).where(model.prescription_id.in_(ids)))
            counts[key] += result.rowcount
        result = session.execute(delete(Prescription).where(Prescription.id.in_(ids)))
        counts["prescriptions"] += result.rowcount
        session.commit()
