"""Searching a prescriber's own prescriptions, page by page (protocol-agnostic).

No read event is recorded (the caller is the author), and an active prescription past its
validity shows as expired without a write.
"""

import base64
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session, selectinload

from epu import views
from epu.actors import Actor
from epu.errors import ValidationFailed
from epu.statuses import ACTIVE, EXPIRED
from models import Prescription
from models.base import utcnow
from models.db import read_outside_transaction

COMPARISONS = ("gt", "ge", "lt", "le")
SEARCHABLE_FROM = datetime(1900, 1, 1, tzinfo=UTC)
SEARCHABLE_UNTIL = datetime(9000, 1, 1, tzinfo=UTC)


def encode_cursor(updated_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{pk}".encode()).decode()


def in_searchable_range(moment: datetime) -> bool:
    """Moments a search may compare with: aware, and convertible to UTC either way."""
    return moment.tzinfo is not None and SEARCHABLE_FROM <= moment <= SEARCHABLE_UNTIL


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        moment, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        decoded = datetime.fromisoformat(moment), int(pk[:20])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationFailed({"cursor": "not a cursor returned by this endpoint"}) from error
    if not in_searchable_range(decoded[0]) or not 0 < decoded[1] < 2**63 or len(pk) > 19:
        raise ValidationFailed({"cursor": "not a cursor returned by this endpoint"})
    return decoded


def own_prescriptions(
    *,
    session: Session,
    actor: Actor,
    statuses: Collection[str] | None = None,
    updated: Iterable[tuple[str, datetime]] = (),
    limit: int = 50,
    cursor: str | None = None,
    view: Callable[[Prescription, Actor], dict[str, Any]] = views.full,
) -> dict[str, Any]:
    """The caller's prescriptions as views, oldest update first, with a keyset cursor.

    `statuses`: prescription statuses to keep (None: all); `updated`: comparisons of the last
    update with a moment, each ("gt" | "ge" | "lt" | "le", aware datetime), all to hold.
    """
    read_outside_transaction(session)
    now = utcnow()
    query = (
        select(Prescription)
        .where(Prescription.prescriber_id == actor.client_pk)
        .options(selectinload(Prescription.lines), selectinload(Prescription.proposals))
        .order_by(Prescription.updated_at, Prescription.id)
        .limit(limit + 1)
    )
    if statuses is not None:
        query = query.where(_status_condition(set(statuses), now))
    for comparison, moment in updated:
        if not in_searchable_range(moment):
            raise ValidationFailed({"updated_since": "out of range (years 1900 to 9000)"})
        query = query.where(_updated_condition(comparison, moment))
    if cursor:
        moment, pk = decode_cursor(cursor)
        query = query.where(
            or_(
                Prescription.updated_at > moment,
                and_(Prescription.updated_at == moment, Prescription.id > pk),
            )
        )
    rows = list(session.scalars(query))
    page = rows[:limit]
    items = []
    for prescription in page:
        item = view(prescription, actor)
        if prescription.status == ACTIVE and prescription.expires_at <= now:
            item["status"] = EXPIRED
        items.append(item)
    next_cursor = encode_cursor(page[-1].updated_at, page[-1].id) if len(rows) > limit else None
    session.rollback()
    return {"items": items, "next_cursor": next_cursor}


def _status_condition(statuses: set[str], now: datetime):
    conditions = [
        Prescription.status == status for status in statuses if status not in (ACTIVE, EXPIRED)
    ]
    if ACTIVE in statuses:
        conditions.append(and_(Prescription.status == ACTIVE, Prescription.expires_at > now))
    if EXPIRED in statuses:
        conditions.append(Prescription.status == EXPIRED)
        conditions.append(and_(Prescription.status == ACTIVE, Prescription.expires_at <= now))
    return or_(*conditions) if conditions else false()


def _updated_condition(comparison: str, moment: datetime):
    column = Prescription.updated_at
    if comparison == "gt":
        return column > moment
    if comparison == "ge":
        return column >= moment
    if comparison == "lt":
        return column < moment
    if comparison == "le":
        return column <= moment
    raise ValueError(f"comparison must be one of {COMPARISONS}, not {comparison!r}")
