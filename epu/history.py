"""Reading the audit trail, and the retention commands (expire, purge)."""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, true
from sqlalchemy.orm import Session, aliased

from epu.actors import Actor
from epu.errors import PrescriptionNotFound, ValidationFailed
from epu.prescriptions import apply_expiry, expire_now, parse_code
from epu.statuses import ACTIVE, CLOSED
from models import Event, IdempotencyRecord, Line, Prescription
from models.base import utcnow
from models.db import writes

# What a prescriber still sees when the patient objected to sharing the execution, and what a
# laboratory sees of another laboratory's execution.
_STATUS_ONLY_EVENTS = (
    "created",
    "cancelled",
    "expired",
    "completed",
    "sampled",  # a nurse's sampling: the nurse stays unnamed (_masked)
    "sampling_corrected",
)
# ... and what the prescriber must answer, or be told was done without its agreement.
_PROPOSAL_EVENTS = (
    "proposed",
    "proposal_withdrawn",
    "proposal_superseded",
    "proposal_accepted",
    "proposal_refused",
    "applied_urgent",
    "applied_prescriber_unavailable",
)
DEFAULT_PAGE, MAX_PAGE = 100, 500


def history(
    *,
    session: Session,
    actor: Actor,
    code: str,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Events oldest first, a page at a time, for the owner prescriber or a laboratory that
    holds or held it. A laboratory sees its own executions; of another laboratory's only the
    status events, and nothing at all once the patient objected at another laboratory."""
    prescription = session.scalar(
        select(Prescription).where(Prescription.code == parse_code(code), _may_read_history(actor))
    )
    if prescription is None:
        session.rollback()
        raise PrescriptionNotFound()
    if prescription.status == ACTIVE and prescription.expires_at <= utcnow():
        expire_now(session=session, code=prescription.code)
    query = (
        select(Event)
        .where(Event.prescription_id == prescription.id, _visible_events(prescription, actor))
        .order_by(Event.id)
        .limit(min(max(limit, 1), MAX_PAGE) + 1)
    )
    if cursor:
        query = query.where(Event.id > _position(session, prescription, cursor))
    events = list(session.scalars(query))
    page = events[: min(max(limit, 1), MAX_PAGE)]
    hidden = prescription.sharing_withheld and actor.is_prescriber
    items = [_event(event, masked=_masked(event, actor, hidden)) for event in page]
    next_cursor = page[-1].public_id if len(events) > len(page) else None
    session.rollback()
    return {"items": items, "next_cursor": next_cursor}


def _may_read_history(actor: Actor):
    """The caller's prescriptions, in the statement that finds the code: an unknown code and
    another party's run exactly the same statements (no timing difference to measure)."""
    if actor.is_prescriber:
        return Prescription.prescriber_id == actor.client_pk
    return or_(
        Prescription.lab_id == actor.client_pk,
        exists().where(
            Event.prescription_id == Prescription.id,
            Event.actor_client_id == actor.client_pk,
            Event.type == "taken",
        ),
    )


def _visible_events(prescription: Prescription, actor: Actor):
    if actor.is_prescriber:
        if prescription.sharing_withheld:
            return Event.type.in_(_STATUS_ONLY_EVENTS + _PROPOSAL_EVENTS)
        return true()
    others = aliased(Event)
    objection_elsewhere = exists().where(
        others.prescription_id == prescription.id,
        others.type == "sharing_withheld",
        others.actor_client_id != actor.client_pk,
    )
    return or_(
        Event.actor_role != "lab",
        Event.actor_client_id == actor.client_pk,
        and_(Event.type.in_(_STATUS_ONLY_EVENTS), ~objection_elsewhere),
    )


def _position(session: Session, prescription: Prescription, cursor: str) -> int:
    position = session.scalar(
        select(Event.id).where(
            Event.prescription_id == prescription.id, Event.public_id == cursor[:24]
        )
    )
    if position is None:
        session.rollback()
        raise ValidationFailed({"cursor": "not a cursor returned by this endpoint"})
    return position


def _masked(event: Event, actor: Actor, execution_hidden: bool) -> bool:
    """A laboratory is never named to another laboratory, nor to a prescriber it is hidden from."""
    if event.actor_role == "nurse":
        return execution_hidden
    if event.actor_role != "lab":
        return False
    return execution_hidden or (actor.is_lab and event.actor_client_id != actor.client_pk)


def _event(event: Event, *, masked: bool) -> dict[str, Any]:
    return {
        "id": event.public_id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "type": event.type,
        "actor": {
            "role": event.actor_role,
            "identifier": None if masked else event.actor_identifier,
            "name": None if masked else event.actor_name,
        },
        "detail": event.detail,
    }


# The retention commands run beside the service: each batch is a short transaction, and after
# each the command rests as long as the batch took, so that it never takes more than half of the
# database's time (at 10 million prescriptions, back to back batches of 500 delayed scans by up
# to 0.5 s through I/O: bench/RESULTS.md).
RETENTION_BATCH = 200
RETENTION_BUSY_SHARE = 0.5


class Pacer:
    """Rests after each batch so that batches take at most `busy_share` of the time."""

    def __init__(
        self,
        busy_share: float = RETENTION_BUSY_SHARE,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._rest_per_busy = (1 - busy_share) / busy_share
        self._sleep, self._clock = sleep, clock
        self._began = clock()

    def batch_done(self) -> None:
        self._sleep((self._clock() - self._began) * self._rest_per_busy)
        self._began = self._clock()


@writes
def expire_due(
    *, session: Session, batch_size: int = RETENTION_BATCH, pacer: Pacer | None = None
) -> int:
    """Mark every active prescription past its validity as expired; returns how many."""
    pacer = pacer or Pacer()
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
        pacer.batch_done()


@writes
def purge(
    *,
    session: Session,
    older_than_days: int,
    batch_size: int = RETENTION_BATCH,
    pacer: Pacer | None = None,
) -> dict[str, int]:
    """Delete closed prescriptions untouched for that long, with everything attached to them."""
    pacer = pacer or Pacer()
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
        if len(ids) < batch_size:
            return counts
        pacer.batch_done()
