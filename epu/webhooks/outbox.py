"""The outbox: the deliveries an event causes, written in the transaction that records it.

Nothing is sent from here. A delivery row commits (or rolls back) with its event, so a
committed event is never lost and a rolled-back one is never sent; the dispatcher sends what
committed. One row per delivery (rather than a cursor over event ids) is what keeps sequence
gaps harmless on PostgreSQL: ids are not in commit order, but nothing skips past a row.
"""

from sqlalchemy import Insert, Select, bindparam, event, select
from sqlalchemy.orm import Session

from epu.actors import LAB, PRESCRIBER, Actor
from epu.webhooks.events import PUBLIC_NAMES, wanted
from models import Prescription, WebhookDelivery, WebhookSubscription

PENDING, DELIVERED, SKIPPED = "pending", "delivered", "skipped"
_QUEUED = "epu.webhooks.queued"


def candidates(prescription: Prescription, actor: Actor | None) -> set[int]:
    """Clients that may be told of an event: the owner prescriber, the laboratory that acted
    (or, for anyone else's event, the laboratory holding the prescription), the actor itself.
    Never another laboratory."""
    clients = {prescription.prescriber_id}
    if actor is not None and actor.role == LAB:
        clients.add(actor.client_pk)
    elif prescription.lab_id is not None:
        clients.add(prescription.lab_id)
    if actor is not None and actor.role not in (LAB, PRESCRIBER):
        clients.add(actor.client_pk)
    return clients


def subscribers(prescription: Prescription | None, kind: str, actor: Actor | None) -> list[int]:
    """The clients whose subscriptions an event may be delivered to (none: not a public event)."""
    if prescription is None or kind not in PUBLIC_NAMES:
        return []
    return list(candidates(prescription, actor))


def enqueue(
    session: Session,
    event_id: int,
    kind: str,
    prescription: Prescription | None,
    actor: Actor | None,
    subscriptions: list[tuple[int, list[str]]] | None = None,
) -> None:
    """Queue the event's deliveries; `subscriptions`: those of its subscribers, when the
    caller read them with the event's INSERT (epu.audit)."""
    if subscriptions is None:
        clients = subscribers(prescription, kind, actor)
        if not clients:
            return
        subscriptions = session.connection().execute(_SUBSCRIPTIONS, {"clients": clients}).all()
    name = PUBLIC_NAMES[kind]
    queued = session.info.setdefault(_QUEUED, [])
    for subscription_id, filters in subscriptions:
        if wanted(filters, name):
            delivery = WebhookDelivery(
                subscription_id=subscription_id,
                event_id=event_id,
                prescription_id=prescription.id,
                kind=name,
                status=PENDING,
                attempts=0,
            )
            session.add(delivery)
            queued.append((delivery, prescription))


# Built once, run on the connection: on every event of every write, the ORM's compilation of
# a fresh select was 10 % of a create's CPU (py-spy).
_subscriptions = WebhookSubscription.__table__.c
_SUBSCRIPTIONS = select(_subscriptions.id, _subscriptions.events).where(
    _subscriptions.client_id.in_(bindparam("clients", expanding=True))
)


def with_subscriptions(insert_event: Insert) -> Select:
    """The event's INSERT ... RETURNING id as a CTE, answering one row per subscription of the
    clients given (`clients`), or one without when they have none: PostgreSQL only."""
    recorded = insert_event.cte("recorded")
    return select(
        recorded.c.id, _subscriptions.id.label("subscription_id"), _subscriptions.events
    ).select_from(
        recorded.outerjoin(
            WebhookSubscription.__table__,
            _subscriptions.client_id.in_(bindparam("clients", expanding=True)),
        )
    )


@event.listens_for(Session, "before_commit")
def _snapshot_prescription(session: Session) -> None:
    """Each delivery carries the version and status the transaction ends with."""
    for delivery, prescription in session.info.pop(_QUEUED, ()):
        delivery.prescription_version = prescription.version
        delivery.prescription_status = prescription.status


@event.listens_for(Session, "after_rollback")
def _forget_queued(session: Session) -> None:
    session.info.pop(_QUEUED, None)
