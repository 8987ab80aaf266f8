"""The audit trail: append-only events about prescriptions (a repeated read only adds to the
count of its event)."""

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epu.actors import Actor
from epu.webhooks import outbox
from models import Event, Prescription
from models.base import utcnow


def record(
    session: Session,
    prescription: Prescription | None,
    kind: str,
    actor: Actor | None,
    detail: dict[str, Any],
) -> None:
    event = Event(
        prescription_id=prescription.id if prescription else None,
        type=kind,
        actor_role=actor.role if actor else "system",
        actor_client_id=actor.client_pk if actor else None,
        actor_identifier=actor.identifier if actor else None,
        actor_name=actor.name if actor else "EPU",
        detail=detail,
    )
    session.add(event)
    outbox.enqueue(session, event, prescription, actor)  # same transaction: never lost


REPEAT_WINDOW = timedelta(minutes=10)


def record_once(session: Session, prescription: Prescription, kind: str, actor: Actor) -> None:
    """A read repeated by the same party within 10 minutes adds to the count of the event
    already recorded (detail.count, from 2) instead of a new one: the trail says who looked and
    how often without growing with every read of a client."""
    since = utcnow() - REPEAT_WINDOW
    last = session.scalar(
        select(Event)
        .where(
            Event.prescription_id == prescription.id,
            Event.type == kind,
            Event.actor_client_id == actor.client_pk,
            Event.at > since,
        )
        .order_by(Event.id.desc())
        .limit(1)
    )
    if last is None:
        record(session, prescription, kind, actor, {})
        return
    count = int(last.detail.get("count", 1)) + 1
    last.detail = {**last.detail, "count": count, "last_at": utcnow().isoformat()}
