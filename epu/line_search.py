"""A prescriber's own prescription lines, searched and paged line by line (protocol-agnostic).

Each line is one result: a page may stop in the middle of a prescription and the next page
goes on from there (keyset: last update, prescription, line position). Every filter is applied
in the database, so a page costs one bounded query whatever matches. No read event is
recorded (the caller is the author), and an active prescription past its validity shows as
expired without a write.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, false, func, not_, or_, select
from sqlalchemy.orm import Session, selectinload

from epu import views
from epu.actors import Actor
from epu.statuses import ACTIVE, CANCELLED, EXPIRED, REQUESTED
from models import Line, Prescription
from models.base import utcnow
from models.db import read_outside_transaction

if TYPE_CHECKING:
    from epu.prescriptions import ReadMemory

# The state of a line as its reader sees it: the line statuses, plus "withdrawn" (still
# requested when its prescription was cancelled or expired) and "withheld" (the patient kept
# the execution from the prescriber).
WITHDRAWN, WITHHELD = "withdrawn", "withheld"
Position = tuple[datetime, int, int]  # (updated_at, prescription pk, line position)


@dataclass(frozen=True)
class Span:
    """A time range [start, end) (either end open); inside=False: the moment is outside it."""

    start: datetime | None
    end: datetime | None
    inside: bool = True

    def holds(self, moment: datetime) -> bool:
        within = (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )
        return within == self.inside

    def condition(self, column):
        parts = []
        if self.start is not None:
            parts.append(column >= self.start)
        if self.end is not None:
            parts.append(column < self.end)
        within = and_(*parts)
        return within if self.inside else not_(within)


# All of the groups hold, each group by any of its spans.
TimeCriterion = Sequence[Sequence[Span]]


def holds(moment: datetime, criterion: TimeCriterion) -> bool:
    return all(any(span.holds(moment) for span in group) for group in criterion)


@dataclass(frozen=True)
class LineFilter:
    loincs: Collection[str] | None = None
    states: Collection[str] | None = None
    updated: TimeCriterion = ()
    ins_pseudonym: str | None = None
    codes: Collection[str] | None = None


def _conditions(actor: Actor, where: LineFilter, now: datetime) -> list:
    hidden = Prescription.sharing_withheld
    conditions = [
        Prescription.prescriber_id == actor.client_pk,
        or_(not_(hidden), Line.origin == "prescriber"),
    ]
    if where.loincs is not None:
        conditions.append(Line.loinc.in_(list(where.loincs)) if where.loincs else false())
    if where.states is not None:
        conditions.append(_state(now).in_(list(where.states)) if where.states else false())
    for group in where.updated:
        conditions.append(or_(*(span.condition(Prescription.updated_at) for span in group)))
    if where.ins_pseudonym is not None:
        conditions.append(Prescription.ins_pseudonym == where.ins_pseudonym)
    if where.codes is not None:
        conditions.append(Prescription.code.in_(list(where.codes)) if where.codes else false())
    return conditions


def _state(now: datetime):
    closed = or_(
        Prescription.status.in_((CANCELLED, EXPIRED)),
        and_(Prescription.status == ACTIVE, Prescription.expires_at <= now),
    )
    hidden = Prescription.sharing_withheld
    return case(
        (and_(closed, or_(hidden, Line.status == REQUESTED)), WITHDRAWN),
        (hidden, WITHHELD),
        else_=Line.status,
    )


def own_lines(
    *,
    session: Session,
    actor: Actor,
    where: LineFilter,
    limit: int,
    after: Position | None = None,
    memory: "ReadMemory | None" = None,
) -> dict[str, Any]:
    """Up to `limit` matching lines as (view, line, position), and the position to go on from.
    `memory`: the full views kept by the reads (epu.prescriptions.ReadMemory), used and filled
    here for prescriptions of few enough lines."""
    read_outside_transaction(session)
    now = utcnow()
    query = (
        select(
            Prescription.id,
            Prescription.updated_at,
            Line.position,
            Line.line_id,
            Line.id,
            Prescription.code,
            Prescription.version,
            Prescription.status,
            Prescription.expires_at,
        )
        .join(Line, Line.prescription_id == Prescription.id)
        .where(*_conditions(actor, where, now))
        .order_by(Prescription.updated_at, Prescription.id, Line.position)
        .limit(limit + 1)
    )
    if after is not None:
        moment, pk, position = after
        query = query.where(
            or_(
                Prescription.updated_at > moment,
                and_(
                    Prescription.updated_at == moment,
                    or_(
                        Prescription.id > pk,
                        and_(Prescription.id == pk, Line.position > position),
                    ),
                ),
            )
        )
    rows = session.execute(query).all()
    page = rows[:limit]
    shown, whole = _kept_views(session, page, actor, now, memory, budget=2 * limit)
    if whole:
        found = session.scalars(
            select(Prescription)
            .where(Prescription.id.in_(whole))
            .options(selectinload(Prescription.lines), selectinload(Prescription.proposals))
        )
        for prescription in found:
            view = views.full(prescription, actor)
            memory.keep(("full", prescription.code, prescription.version, actor.client_pk), view)
            shown[prescription.id] = _as_seen(
                view, prescription.status, prescription.expires_at, now
            )
    partial = {row[0] for row in page} - shown.keys()
    if partial:
        # Only the lines of this page are loaded: a page of 200 lines of 200 prescriptions of
        # 50 lines would otherwise read and build 10,000 (the views hold just these lines).
        found = session.scalars(
            select(Prescription)
            .where(Prescription.id.in_(partial))
            .options(
                selectinload(Prescription.lines.and_(Line.id.in_([row[4] for row in page]))),
                selectinload(Prescription.proposals),
            )
        )
        shown.update({prescription.id: _view(prescription, actor, now) for prescription in found})
    session.expunge_all()  # partial lines collections: never to be used again
    items = []
    for row in page:
        view = shown[row.id]
        line = next(line for line in view["lines"] if line["id"] == row.line_id)
        items.append((view, line, (row.updated_at, row.id, row.position)))
    session.rollback()
    return {"items": items, "next": items[-1][2] if len(rows) > limit else None}


def count_own_lines(*, session: Session, actor: Actor, where: LineFilter) -> int:
    read_outside_transaction(session)
    query = (
        select(func.count())
        .select_from(Prescription)
        .join(Line, Line.prescription_id == Prescription.id)
        .where(*_conditions(actor, where, utcnow()))
    )
    total = session.scalar(query) or 0
    session.rollback()
    return total


def codes_for_patient(
    *, session: Session, actor: Actor, codes: Collection[str], ins_pseudonym: str
) -> set[str]:
    """Those of these codes that are the caller's prescriptions for this patient."""
    found = session.scalars(
        select(Prescription.code).where(
            Prescription.code.in_(list(codes)),
            Prescription.prescriber_id == actor.client_pk,
            Prescription.ins_pseudonym == ins_pseudonym,
        )
    )
    result = set(found)
    session.rollback()
    return result


def _kept_views(
    session: Session,
    page: Sequence,
    actor: Actor,
    now: datetime,
    memory: "ReadMemory | None",
    budget: int,
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The views of this page's prescriptions that the process keeps (an overdue one shown
    expired), and those to load whole and keep (while their lines fit in `budget`)."""
    kept: dict[int, dict[str, Any]] = {}
    if memory is None:
        return kept, []
    missing: list[int] = []
    for row in page:
        pk = row[0]
        if pk in kept or pk in missing:
            continue
        view = memory.view(("full", row.code, row.version, actor.client_pk))
        if view is not None:
            kept[pk] = _as_seen(view, row.status, row.expires_at, now)
        else:
            missing.append(pk)
    whole: list[int] = []
    # Counted only for what the process does not keep: a count per row of the page query cost
    # a descent of the lines' index for each of its lines (203 of its 273 buffers at 10 million).
    for pk, lines in _line_counts(session, missing):
        if lines <= budget:
            whole.append(pk)
            budget -= lines
    return kept, whole


def _line_counts(session: Session, prescription_ids: list[int]) -> list[tuple[int, int]]:
    """(prescription, its number of lines), in the order given."""
    if not prescription_ids:
        return []
    counts = dict(
        session.execute(
            select(Line.prescription_id, func.count())
            .where(Line.prescription_id.in_(prescription_ids))
            .group_by(Line.prescription_id)
        ).all()
    )
    return [(pk, counts.get(pk, 0)) for pk in prescription_ids]


def _view(prescription: Prescription, actor: Actor, now: datetime) -> dict[str, Any]:
    return _as_seen(
        views.full(prescription, actor), prescription.status, prescription.expires_at, now
    )


def _as_seen(
    view: dict[str, Any], status: str, expires_at: datetime, now: datetime
) -> dict[str, Any]:
    """The view as a page shows it: an active prescription past its validity is expired (the
    kept view stays that of the stored version, as the reads keep it)."""
    if status == ACTIVE and expires_at <= now:
        return {**view, "status": EXPIRED}
    return view
