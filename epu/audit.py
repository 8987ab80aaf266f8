"""The audit trail: append-only events about prescriptions (a repeated read only adds to the
count of its event)."""

import time
from collections import OrderedDict
from datetime import datetime, timedelta
from threading import Lock
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from epu.actors import Actor
from epu.webhooks import outbox
from models import Event, Prescription
from models.base import utcnow
from models.db import writes


def record(
    session: Session,
    prescription: Prescription | None,
    kind: str,
    actor: Actor | None,
    detail: dict[str, Any],
) -> None:
    record_each(session, [prescription], kind, actor, detail)


def record_each(
    session: Session,
    prescriptions: list[Prescription | None],
    kind: str,
    actor: Actor | None,
    detail: dict[str, Any],
) -> None:
    """One event of this kind for each prescription, inserted by one statement (a patient
    lookup audits every prescription it lists)."""
    if not prescriptions:
        return
    # A Core INSERT at once rather than objects flushed at commit: the unit of work for one
    # row was 12 % of a create's CPU (py-spy). Nothing reads the events back as objects.
    rows = [_event_values(p.id if p else None, kind, actor, detail) for p in prescriptions]
    connection = session.connection()
    single = prescriptions[0] if len(prescriptions) == 1 else None
    clients = outbox.subscribers(single, kind, actor)
    if clients and connection.dialect.name == "postgresql":
        # One round trip for the event and the subscriptions its outbox needs.
        parameters = {**rows[0], "clients": clients}
        found = connection.execute(_INSERT_EVENT_WITH_SUBSCRIPTIONS, parameters).all()
        subscriptions = [(r.subscription_id, r.events) for r in found if r.subscription_id]
        outbox.enqueue(session, found[0].id, kind, single, actor, subscriptions)
        return
    ids = connection.execute(_INSERT_EVENT, rows).scalars().all()  # one: no executemany
    for event_id, prescription in zip(ids, prescriptions, strict=True):
        outbox.enqueue(session, event_id, kind, prescription, actor)  # same transaction


def _event_values(
    prescription_id: int | None, kind: str, actor: Actor | None, detail: dict
) -> dict[str, Any]:
    return {
        "prescription_id": prescription_id,
        "type": kind,
        "actor_role": actor.role if actor else "system",
        "actor_client_id": actor.client_pk if actor else None,
        "actor_identifier": actor.identifier if actor else None,
        "actor_name": actor.name if actor else "EPU",
        "detail": detail,
    }


_INSERT_EVENT = insert(Event.__table__).returning(
    Event.__table__.c.id, sort_by_parameter_order=True
)
_EVENT_COLUMNS = tuple(_event_values(None, "", None, {}))  # what record_each inserts
_INSERT_EVENT_WITH_SUBSCRIPTIONS = outbox.with_subscriptions(
    insert(Event.__table__)
    .values({name: bindparam(name, type_=Event.__table__.c[name].type) for name in _EVENT_COLUMNS})
    .returning(Event.__table__.c.id)
)


REPEAT_WINDOW = timedelta(minutes=10)


class RepeatedReads:
    """The reads this process recorded in the last 10 minutes, by prescription, kind and
    party. A repeat is counted here and written to its event at most every `flush_seconds`
    (0: at once), so that a repeated read is a read and not a write: the commit of every read
    was most of its cost. The first read of a window is always written before the data goes
    out; a process killed outright loses at most `flush_seconds` of repeat counts."""

    def __init__(self, flush_seconds: float, size: int = 100_000) -> None:
        self.flush_seconds, self._size = flush_seconds, size
        self._windows: OrderedDict[tuple, list] = OrderedDict()  # [event id, until, repeats]
        self._orphans: list[tuple[int, int]] = []  # repeats of windows pushed out of the cache
        self._flushed_at = time.monotonic()
        self._lock = Lock()

    def repeat(self, key: tuple, now: datetime) -> bool:
        """Count one more read if its window is open here; False: it must be recorded."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[1] <= now:
                return False
            window[2] += 1
            return True

    def opened(self, key: tuple, event_id: int, until: datetime) -> None:
        with self._lock:
            self._windows[key] = [event_id, until, 0]
            self._windows.move_to_end(key)
            while len(self._windows) > self._size:
                event, _, repeats = self._windows.popitem(last=False)[1]
                if repeats:
                    self._orphans.append((event, repeats))

    def due(self, now: datetime) -> list[tuple[int, int]]:
        """The (event id, repeats) to write now, once per interval; they are then reset."""
        with self._lock:
            if time.monotonic() - self._flushed_at < self.flush_seconds:
                return []
            self._flushed_at = time.monotonic()
            counts, self._orphans = self._orphans, []
            for key, window in list(self._windows.items()):
                if window[2]:
                    counts.append((window[0], window[2]))
                    window[2] = 0
                if window[1] <= now:
                    del self._windows[key]
            return counts


def record_read(
    *,
    session: Session,
    prescription_id: int,
    code: str,
    kind: str,
    actor: Actor,
    repeats: RepeatedReads | None = None,
) -> None:
    """Record that `actor` read this prescription, outside of any open transaction: a read
    repeated by the same party within 10 minutes adds to the count of the event already
    recorded (detail.count, from 2) instead of a new one, so the trail says who looked and how
    often without growing with every read of a client."""
    key, now = (code, kind, actor.client_pk), utcnow()  # a code is never reused
    if repeats is None or not repeats.repeat(key, now):
        event_id, at = _record_first_read(
            session=session, prescription_id=prescription_id, kind=kind, actor=actor
        )
        if repeats is None:
            return
        repeats.opened(key, event_id, at + REPEAT_WINDOW)
    counts = repeats.due(now)  # any read writes what is due, of any prescription
    if counts:
        _add_repeats(session=session, counts=counts)


@writes
def _record_first_read(
    *, session: Session, prescription_id: int, kind: str, actor: Actor
) -> tuple[int, datetime]:
    connection = session.connection()
    # The prescription's row lock orders two first reads of one party (other processes too).
    connection.execute(_LOCK_PRESCRIPTION, {"prescription_id": prescription_id})
    now = utcnow()
    last = connection.execute(
        _LAST_READ,
        {
            "prescription_id": prescription_id,
            "kind": kind,
            "client": actor.client_pk,
            "since": now - REPEAT_WINDOW,
        },
    ).one_or_none()
    if last is None:
        values = {**_event_values(prescription_id, kind, actor, {}), "at": now}
        recorded = (connection.execute(_INSERT_EVENT, values).scalar_one(), now)
    else:
        connection.execute(_SET_DETAIL, {"event_id": last.id, "new": _counted(last.detail, 1)})
        recorded = (last.id, last.at)
    session.commit()
    return recorded


# The first read of each party is a write: its statements built once, as the event's INSERT.
_events = Event.__table__.c
_LOCK_PRESCRIPTION = (
    select(Prescription.__table__.c.id)
    .where(Prescription.__table__.c.id == bindparam("prescription_id"))
    .with_for_update()
)
_LAST_READ = (
    select(_events.id, _events.at, _events.detail)
    .where(
        _events.prescription_id == bindparam("prescription_id"),
        _events.type == bindparam("kind"),
        _events.actor_client_id == bindparam("client"),
        _events.at > bindparam("since"),
    )
    .order_by(_events.id.desc())
    .limit(1)
)
_SET_DETAIL = (
    update(Event.__table__)
    .where(_events.id == bindparam("event_id"))
    .values(detail=bindparam("new", type_=_events.detail.type))
)


@writes
def _add_repeats(*, session: Session, counts: list[tuple[int, int]]) -> None:
    for event_id, repeats in sorted(counts):  # one order for every process: no deadlock
        event = session.get(Event, event_id, with_for_update=True)
        if event is not None:
            _count(event, repeats)
    session.commit()


def _count(event: Event, repeats: int) -> None:
    event.detail = _counted(event.detail, repeats)


def _counted(detail: dict[str, Any], repeats: int) -> dict[str, Any]:
    count = int(detail.get("count", 1)) + repeats
    return {**detail, "count": count, "last_at": utcnow().isoformat()}
