"""The dispatcher (`epu dispatch`): sends what the outbox holds, at least once, in order per
prescription and subscription, with retries, on one process or several sharing the work.

How several dispatchers share the work: a delivery is claimed by writing a lease (owner and
expiry) in a short transaction that reads the candidates `FOR UPDATE SKIP LOCKED`, so two
dispatchers never claim the same row; no transaction stays open while a receiver answers. A
dispatcher that dies leaves leases that expire: another one takes the work over then.

Order: a delivery waits while an earlier one of the same subscription and prescription is
still pending. Use cases lock the prescription row, so one prescription's event ids are in
commit order even on PostgreSQL; across prescriptions nothing is promised.
"""

import functools
import json
import logging
import os
import queue
import random
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, and_, bindparam, exists, func, insert, or_, select, true, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from epu.settings import Settings, WebhookSettings
from epu.webhooks import fhir, sender, signing
from epu.webhooks.events import PING, STATUS_ONLY
from epu.webhooks.outbox import DELIVERED, PENDING, SKIPPED
from models import Event, Prescription, WebhookAttempt, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from models.db import make_engine, writes

log = logging.getLogger("epu.dispatch")
CANDIDATES_PER_SLOT = 4
WINDOW = 64  # pending deliveries of one subscription looked at per claim, the oldest


@dataclass(frozen=True)
class Job:
    delivery_id: int
    subscription_id: int
    subscription_public_id: str
    url: str
    secrets: tuple[str, ...]  # encrypted, current first
    message_id: str
    kind: str
    event_id: int | None
    payload: dict[str, Any]
    content_type: str = "application/json"
    headers: str | None = None  # encrypted JSON list of "Name: value" (FHIR channel.header)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def payload(row: Row, at: datetime | None) -> dict:
    """What a receiver gets: no health data, only what tells it to read with its own token."""
    if row.kind == PING:
        return {"type": PING, "at": _iso(utcnow()), "subscription": row.public_id}
    return {
        "type": row.kind,
        "id": row.event_id,
        "at": _iso(at),
        "prescription": {
            "code": row.code,
            "version": row.prescription_version,
            "status": row.prescription_status,
        },
    }


def _hidden(row: Row) -> bool:
    """The patient objected: the owner prescriber gets the status events only (checked when
    sending, so an objection recorded after the event still applies)."""
    return (
        row.kind not in (PING, fhir.HANDSHAKE)
        and row.sharing_withheld
        and row.client_id == row.prescriber_id
        and row.kind not in STATUS_ONLY
    )


@writes
def claim(
    *,
    session: Session,
    owner: str,
    slots: int,
    busy: dict[int, int],
    settings: WebhookSettings,
) -> list[Job]:
    """Lease up to `slots` deliveries that are due, the oldest first, within the limits."""
    now = utcnow()
    saturated = [sid for sid, count in busy.items() if count >= settings.per_subscription]
    rows = session.execute(
        _claim_statement(session.get_bind().dialect.name),
        {
            "now": now,
            "heads": settings.per_subscription,
            "candidates": slots * CANDIDATES_PER_SLOT,
            "saturated": saturated,
        },
    ).all()
    taken: Counter[int] = Counter(busy)
    jobs: list[Job] = []
    leased: list[int] = []
    skipped: list[int] = []
    for row in rows:
        if len(jobs) >= slots:
            break
        if _hidden(row):
            skipped.append(row.id)
            continue
        # A failing receiver gets one probe at a time; a healthy one a few in parallel.
        cap = 1 if row.failures else settings.per_subscription
        if taken[row.subscription_id] >= cap:
            continue
        taken[row.subscription_id] += 1
        number = row.number
        if row.channel == "fhir" and number is None and row.event_id:
            number = _number(session, row.id, row.subscription_id)
        leased.append(row.id)
        jobs.append(_job(row, number, now))
    quiet = {"synchronize_session": False}
    until = now + timedelta(seconds=settings.lease)
    if leased:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(leased))
            .values(lease_owner=owner, lease_until=until),
            execution_options=quiet,
        )
    if skipped:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(skipped)).values(status=SKIPPED),
            execution_options=quiet,
        )
    session.commit()
    return jobs


_NOW = bindparam("now")


def _free(delivery) -> list:
    """Pending, and held by no dispatcher."""
    return [
        delivery.status == PENDING,
        or_(delivery.lease_until.is_(None), delivery.lease_until < _NOW),
    ]


def _sendable(delivery) -> list:
    """A free delivery whose subscription may receive it, and that no earlier pending
    delivery of its subscription and prescription goes before."""
    earlier = aliased(WebhookDelivery)
    return [
        *_free(delivery),
        or_(
            WebhookSubscription.status == "active",
            and_(WebhookSubscription.status == "requested", delivery.kind == fhir.HANDSHAKE),
        ),
        ~exists().where(
            earlier.subscription_id == delivery.subscription_id,
            earlier.prescription_id == delivery.prescription_id,
            earlier.status == PENDING,
            earlier.event_id < delivery.event_id,
        ),
    ]


# Plain columns, not ORM objects: building entities was a third of a claim's time (py-spy).
_CLAIMED = (
    WebhookDelivery.id,
    WebhookDelivery.kind,
    WebhookDelivery.event_id,
    WebhookDelivery.number,
    WebhookDelivery.prescription_version,
    WebhookDelivery.prescription_status,
    WebhookSubscription.id.label("subscription_id"),
    WebhookSubscription.public_id,
    WebhookSubscription.client_id,
    WebhookSubscription.kind.label("channel"),
    WebhookSubscription.status.label("subscription_status"),
    WebhookSubscription.url,
    WebhookSubscription.fhir,
    WebhookSubscription.failures,
    WebhookSubscription.secret,
    WebhookSubscription.previous_secret,
    WebhookSubscription.previous_secret_until,
    Prescription.code,
    Prescription.sharing_withheld,
    Prescription.prescriber_id,
    Event.at,
)


@functools.cache
def _claim_statement(dialect: str):
    """Built once per process (constructing it cost more than running it); the values come
    as parameters: now, heads (per subscription), candidates (in all) and saturated."""
    due = _due_queues() if dialect == "postgresql" else _due_scan()
    return due.where(WebhookSubscription.id.not_in(bindparam("saturated", expanding=True))).limit(
        bindparam("candidates")
    )


def _due_scan():
    """SQLite (one embedded service, a small outbox): every pending delivery is looked at."""
    return _claimable(
        select(*_CLAIMED)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(*_sendable(WebhookDelivery))
    )


def _due_queues():
    """PostgreSQL: the work is found queue by queue, so a claim costs what the subscriptions
    with something pending cost, not what the whole outbox holds (read whole, a claim took
    92 ms at 15,000 pending and one dispatcher sent ~100/s). The subscriptions with pending
    deliveries are enumerated one index probe each (a loose index scan); of each, only the
    oldest `WINDOW` pending deliveries are looked at, among them always its oldest, which
    nothing goes before. A waiting or retrying subscription's backlog costs nothing."""
    after = aliased(WebhookDelivery)
    queued = (
        select(func.min(WebhookDelivery.subscription_id).label("id"))
        .where(WebhookDelivery.status == PENDING)
        .cte("queued", recursive=True)
    )
    following = select(func.min(after.subscription_id)).where(
        after.status == PENDING, after.subscription_id > queued.c.id
    )
    queued = queued.union_all(select(following.scalar_subquery()).where(queued.c.id.is_not(None)))
    window = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.subscription_id == WebhookSubscription.id,
        )
        .order_by(WebhookDelivery.id)
        .limit(WINDOW)
        .correlate(WebhookSubscription)
        .subquery("window")
    )
    head = aliased(WebhookDelivery, window)
    heads = (
        select(head.id)
        .where(*_sendable(head))
        .order_by(head.id)
        .limit(bindparam("heads"))
        .correlate(WebhookSubscription)
        .lateral("heads")
    )
    return _claimable(
        select(*_CLAIMED)
        .select_from(queued)
        .join(WebhookSubscription, WebhookSubscription.id == queued.c.id)
        .join(heads, true())
        .join(WebhookDelivery, WebhookDelivery.id == heads.c.id)
        # Again on the locked row itself: PostgreSQL re-checks only its conditions on the
        # newest version of a row changed since the snapshot, so a delivery another
        # dispatcher leased or settled meanwhile would otherwise be sent twice.
        .where(*_free(WebhookDelivery))
    )


def _claimable(query):
    return (
        query.outerjoin(Event, Event.id == WebhookDelivery.event_id)
        .outerjoin(Prescription, Prescription.id == WebhookDelivery.prescription_id)
        .where(or_(WebhookSubscription.retry_at.is_(None), WebhookSubscription.retry_at <= _NOW))
        .order_by(WebhookDelivery.id)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )


def _number(session: Session, delivery_id: int, subscription_id: int) -> int:
    """The subscription's next FHIR event number, given to the delivery for good (atomic:
    dispatchers may claim together)."""
    number = session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id)
        .values(events_count=WebhookSubscription.events_count + 1)
        .returning(WebhookSubscription.events_count)
    ).scalar_one()
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(number=number),
        execution_options={"synchronize_session": False},
    )
    return number


def _job(row: Row, number: int | None, now: datetime) -> Job:
    secrets = [row.secret]
    if row.previous_secret and (row.previous_secret_until or now) > now:
        secrets.append(row.previous_secret)
    if row.kind in (PING, fhir.HANDSHAKE):
        message_id = f"{row.kind}_{row.id}"
    else:
        message_id = f"evt_{row.event_id}"
    common = {
        "delivery_id": row.id,
        "subscription_id": row.subscription_id,
        "subscription_public_id": row.public_id,
        "url": row.url,
        "secrets": tuple(secrets),
        "message_id": message_id,
        "kind": row.kind,
        "event_id": row.event_id,
    }
    if row.channel == "fhir":
        return Job(
            **common,
            payload=fhir_payload(row, number, now),
            content_type=fhir.FHIR_JSON,
            headers=(row.fhir or {}).get("headers"),
        )
    return Job(**common, payload=payload(row, row.at))


def fhir_payload(row: Row, number: int | None, now: datetime) -> dict[str, Any]:
    """A FHIR notification Bundle (id-only: the focus Task, nothing else)."""
    base = (row.fhir or {}).get("base", "")
    handshake = row.kind == fhir.HANDSHAKE
    events = [] if handshake else [{"number": number, "at": row.at, "code": row.code}]
    status = fhir.status_parameters(
        base=base,
        subscription_id=row.public_id,
        status=row.subscription_status,
        kind="handshake" if handshake else "event-notification",
        events_since_start=0 if handshake else number,
        events=events,
    )
    return fhir.notification(base=base, subscription_id=row.public_id, at=now, status=status)


def retry_delay(failures: int, settings: WebhookSettings) -> float:
    """Exponential backoff with jitter: base, 2 x base, 4 x base... up to the cap, +/- 25 %."""
    delay = min(settings.retry_base * 2 ** max(failures - 1, 0), settings.retry_cap)
    return delay * random.uniform(0.75, 1.25)


@writes
def settle(
    *,
    session: Session,
    results: list[tuple[Job, sender.Outcome]],
    settings: WebhookSettings,
) -> None:
    """Record attempts and what follows from them, several at once, in one transaction."""
    now = utcnow()
    _settle_successes(session, [(j, o) for j, o in results if o.ok], now)
    for job, outcome in results:
        if not outcome.ok:
            _settle_failure(session, job, outcome, settings, now)
    session.commit()


def _settle_successes(session: Session, results: list[tuple[Job, sender.Outcome]], now) -> None:
    if not results:
        return
    # FOR KEY SHARE: the rows stay, and writers' foreign key checks never wait on us.
    alive = set(
        session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.id.in_([job.delivery_id for job, _ in results]))
            .with_for_update(read=True, key_share=True)
        )
    )
    results = [(job, outcome) for job, outcome in results if job.delivery_id in alive]
    if not results:  # their subscriptions were deleted meanwhile
        return
    session.execute(
        insert(WebhookAttempt),
        [
            {
                "subscription_id": job.subscription_id,
                "delivery_id": job.delivery_id,
                "event_id": job.event_id,
                "kind": job.kind,
                "at": now,
                "http_status": outcome.http_status,
                "duration_ms": outcome.duration_ms,
                "response_excerpt": outcome.excerpt,
            }
            for job, outcome in results
        ],
    )
    quiet = {"synchronize_session": False}
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_([job.delivery_id for job, _ in results]))
        .values(
            status=DELIVERED,
            delivered_at=now,
            attempts=WebhookDelivery.attempts + 1,
            lease_owner=None,
            lease_until=None,
        ),
        execution_options=quiet,
    )
    subscriptions = {job.subscription_id for job, _ in results}
    session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id.in_(subscriptions), WebhookSubscription.failures > 0)
        .values(failures=0, failing_since=None, retry_at=None),
        execution_options=quiet,
    )
    handshakes = {job.subscription_id for job, _ in results if job.kind == fhir.HANDSHAKE}
    if handshakes:
        session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id.in_(handshakes), WebhookSubscription.status == "requested"
            )
            .values(status="active"),
            execution_options=quiet,
        )


def _settle_failure(
    session: Session, job: Job, outcome: sender.Outcome, settings: WebhookSettings, now
) -> None:
    # FOR NO KEY UPDATE: writers inserting deliveries hold KEY SHARE locks on the
    # subscription (foreign key checks); a plain FOR UPDATE would queue them behind us.
    delivery = session.get(WebhookDelivery, job.delivery_id, with_for_update={"key_share": True})
    subscription = session.get(
        WebhookSubscription, job.subscription_id, with_for_update={"key_share": True}
    )
    if delivery is None or subscription is None:  # deleted meanwhile
        return
    session.add(
        WebhookAttempt(
            subscription_id=subscription.id,
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            kind=delivery.kind,
            at=now,
            http_status=outcome.http_status,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            response_excerpt=outcome.excerpt,
        )
    )
    delivery.attempts += 1
    delivery.lease_owner = delivery.lease_until = None
    if outcome.gone:
        log.info("subscription %s answered 410 Gone: deleted", subscription.public_id)
        session.delete(subscription)
    else:
        _note_failure(subscription, outcome, now, settings)
    session.flush()


def _note_failure(
    subscription: WebhookSubscription, outcome: sender.Outcome, now: datetime, settings
) -> None:
    subscription.failing_since = subscription.failing_since or now
    subscription.failures += 1
    subscription.retry_at = now + timedelta(seconds=retry_delay(subscription.failures, settings))
    if (now - subscription.failing_since).total_seconds() >= settings.retry_for:
        what = outcome.error or f"HTTP {outcome.http_status}"
        subscription.status = "suspended"
        subscription.status_reason = (
            f"No successful delivery since {_iso(subscription.failing_since)} "
            f"({subscription.failures} attempts); last: {what}. Resume it to deliver the backlog."
        )
        subscription.retry_at = None


def send(job: Job, key: bytes, settings: WebhookSettings) -> sender.Outcome:
    body = json.dumps(job.payload, separators=(",", ":"), ensure_ascii=False)
    now = utcnow()
    secrets = [signing.decrypt(secret, key) for secret in job.secrets]
    headers = {}
    if job.headers:
        for header in json.loads(signing.decrypt(job.headers, key)):
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
    headers.update(
        {
            "Content-Type": job.content_type,
            "webhook-id": job.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signing.signature(secrets, job.message_id, now, body),
        }
    )
    return sender.post(
        job.url,
        body.encode(),
        headers,
        timeout=settings.timeout,
        allow_private=settings.allow_private,
    )


def dispatcher_engine(settings: Settings) -> Engine:
    """One connection per delivery thread, plus the claims. Delivery is at least once: a
    lease or an outcome lost with the server's last commits means one more sending (the same
    webhook-id), never a lost event, so the dispatcher's commits need not wait for the disk."""
    return make_engine(
        settings.database_url,
        pool_size=settings.webhooks.workers + 2,
        max_overflow=0,
        durable_commits=False,
    )


class Dispatcher:
    """A global pool of delivery threads fed by short claim transactions."""

    def __init__(self, session_factory: sessionmaker, settings: Settings, owner: str = ""):
        self.sessions = session_factory
        self.settings = settings.webhooks
        self.key = signing.encryption_key(settings)
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}"
        self.pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="deliver")
        self.lock = threading.Lock()
        # Requests under way per subscription (the per-subscription cap); a failed one counts
        # until its failure is recorded, so that a failing receiver gets one probe at a time.
        self.busy: Counter[int] = Counter()
        # Claimed and not yet sent: up to twice the workers, so that a worker that finishes
        # finds its next delivery already leased instead of waiting for the next claim.
        self.in_flight = 0
        self.ahead = 2 * self.settings.workers
        self.wake = threading.Event()
        # Outcomes are recorded by one thread, many per transaction.
        self.outcomes: queue.SimpleQueue[tuple[Job, sender.Outcome]] = queue.SimpleQueue()
        self.sending_done = threading.Event()
        self.settler = threading.Thread(target=self._settle_loop, name="settle", daemon=True)

    def run(self, stop: threading.Event) -> None:
        log.info("dispatcher %s started (%d workers)", self.owner, self.settings.workers)
        self.settler.start()
        try:
            while not stop.is_set():
                try:
                    started = self.step()
                except Exception:  # the database away for a moment: retry, do not die
                    log.exception("claiming deliveries failed")
                    stop.wait(min(self.settings.poll * 20, 2.0))
                    continue
                if not started:
                    self.wake.wait(self.settings.poll)
                    self.wake.clear()
        finally:
            self.pool.shutdown(wait=True)  # in-flight deliveries end within their timeout
            self.sending_done.set()
            self.settler.join()
            log.info("dispatcher %s stopped", self.owner)

    def step(self) -> int:
        with self.lock:
            slots = self.ahead - self.in_flight
            busy = {sid: count for sid, count in self.busy.items() if count}
        if slots <= 0:
            return 0
        with self.sessions() as session:
            jobs = claim(
                session=session, owner=self.owner, slots=slots, busy=busy, settings=self.settings
            )
        for job in jobs:
            with self.lock:
                self.in_flight += 1
                self.busy[job.subscription_id] += 1
            self.pool.submit(self._deliver, job)
        return len(jobs)

    def _deliver(self, job: Job) -> None:
        try:
            outcome = send(job, self.key, self.settings)
        except Exception as error:  # e.g. a secret that no longer decrypts
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            outcome = sender.Outcome(None, f"internal: {type(error).__name__}", 0)
        self.outcomes.put((job, outcome))
        with self.lock:
            self.in_flight -= 1
            if outcome.ok:
                self.busy[job.subscription_id] -= 1
        self.wake.set()

    def _settle_loop(self) -> None:
        while True:
            try:
                batch = [self.outcomes.get(timeout=0.2)]
            except queue.Empty:
                if self.sending_done.is_set():
                    return
                continue
            while len(batch) < 500:
                try:
                    batch.append(self.outcomes.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.sessions() as session:
                    settle(session=session, results=batch, settings=self.settings)
            except Exception:  # their leases expire and they are sent again: at least once
                log.exception("recording %d delivery outcomes failed", len(batch))
            finally:
                with self.lock:
                    for job, outcome in batch:
                        if not outcome.ok:
                            self.busy[job.subscription_id] -= 1
                self.wake.set()
