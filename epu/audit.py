"""The audit trail: append-only events about prescriptions."""

from typing import Any

from sqlalchemy.orm import Session

from epu.actors import Actor
from epu.webhooks import outbox
from models import Event, Prescription


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
