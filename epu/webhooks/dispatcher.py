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

import json
import logging
import os
import random
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from epu.settings import Settings, WebhookSettings
from epu.webhooks import sender, signing
from epu.webhooks.events import PING, STATUS_ONLY
from epu.webhooks.outbox import DELIVERED, PENDING, SKIPPED
from models import Event, Prescription, WebhookAttempt, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from models.db import writes

log = logging.getLogger("epu.dispatch")
CANDIDATES_PER_SLOT = 4


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


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def payload(delivery: WebhookDelivery, subscription: WebhookSubscription, code, at) -> dict:
    """What a receiver gets: no health data, only what tells it to read with its own token."""
    if delivery.kind == PING:
        return {"type": PING, "at": _iso(utcnow()), "subscription": subscription.public_id}
    return {
        "type": delivery.kind,
        "id": delivery.event_id,
        "at": _iso(at),
        "prescription": {
            "code": code,
            "version": delivery.prescription_version,
            "status": delivery.prescription_status,
        },
    }


def _hidden(delivery: WebhookDelivery, subscription: WebhookSubscription, row) -> bool:
    """The patient objected: the owner prescriber gets the status events only (checked when
    sending, so an objection recorded after the event still applies)."""
    return (
        delivery.kind != PING
        and row.sharing_withheld
        and subscription.client_id == row.prescriber_id
        and delivery.kind not in STATUS_ONLY
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
    earlier = aliased(WebhookDelivery)
    waits_for_earlier = exists().where(
        earlier.subscription_id == WebhookDelivery.subscription_id,
        earlier.prescription_id == WebhookDelivery.prescription_id,
        earlier.status == PENDING,
        earlier.event_id < WebhookDelivery.event_id,
    )
    saturated = [sid for sid, count in busy.items() if count >= settings.per_subscription]
    query = (
        select(
            WebhookDelivery,
            WebhookSubscription,
            Prescription.code,
            Prescription.sharing_withheld,
            Prescription.prescriber_id,
            Event.at,
        )
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .outerjoin(Event, Event.id == WebhookDelivery.event_id)
        .outerjoin(Prescription, Prescription.id == WebhookDelivery.prescription_id)
        .where(
            WebhookDelivery.status == PENDING,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
            WebhookSubscription.status == "active",
            or_(WebhookSubscription.retry_at.is_(None), WebhookSubscription.retry_at <= now),
            ~waits_for_earlier,
        )
        .order_by(WebhookDelivery.id)
        .limit(slots * CANDIDATES_PER_SLOT)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    if saturated:
        query = query.where(WebhookDelivery.subscription_id.not_in(saturated))
    taken: Counter[int] = Counter(busy)
    jobs: list[Job] = []
    until = now + timedelta(seconds=settings.lease)
    for delivery, subscription, *row in session.execute(query):
        if len(jobs) >= slots:
            break
        facts = _Facts(*row)
        if _hidden(delivery, subscription, facts):
            delivery.status = SKIPPED
            continue
        # A failing receiver gets one probe at a time; a healthy one a few in parallel.
        cap = 1 if subscription.failures else settings.per_subscription
        if taken[subscription.id] >= cap:
            continue
        taken[subscription.id] += 1
        delivery.lease_owner, delivery.lease_until = owner, until
        jobs.append(_job(delivery, subscription, facts, now))
    session.commit()
    return jobs


@dataclass(frozen=True)
class _Facts:
    code: str | None
    sharing_withheld: bool | None
    prescriber_id: int | None
    at: datetime | None


def _job(delivery: WebhookDelivery, subscription: WebhookSubscription, facts: _Facts, now) -> Job:
    secrets = [subscription.secret]
    if subscription.previous_secret and (subscription.previous_secret_until or now) > now:
        secrets.append(subscription.previous_secret)
    message_id = f"ping_{delivery.id}" if delivery.kind == PING else f"evt_{delivery.event_id}"
    return Job(
        delivery_id=delivery.id,
        subscription_id=subscription.id,
        subscription_public_id=subscription.public_id,
        url=subscription.url,
        secrets=tuple(secrets),
        message_id=message_id,
        kind=delivery.kind,
        event_id=delivery.event_id,
        payload=payload(delivery, subscription, facts.code, facts.at),
    )


def retry_delay(failures: int, settings: WebhookSettings) -> float:
    """Exponential backoff with jitter: base, 2 x base, 4 x base... up to the cap, +/- 25 %."""
    delay = min(settings.retry_base * 2 ** max(failures - 1, 0), settings.retry_cap)
    return delay * random.uniform(0.75, 1.25)


@writes
def settle(
    *, session: Session, job: Job, outcome: sender.Outcome, settings: WebhookSettings
) -> None:
    """Record an attempt and what follows from it, in one transaction."""
    now = utcnow()
    # FOR NO KEY UPDATE: writers inserting deliveries hold KEY SHARE locks on the
    # subscription (foreign key checks); a plain FOR UPDATE would queue them behind us.
    delivery = session.get(WebhookDelivery, job.delivery_id, with_for_update={"key_share": True})
    subscription = session.get(
        WebhookSubscription, job.subscription_id, with_for_update={"key_share": True}
    )
    if delivery is None or subscription is None:  # deleted meanwhile
        session.rollback()
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
    if outcome.ok:
        delivery.status, delivery.delivered_at = DELIVERED, now
        if subscription.failures:
            subscription.failures = 0
            subscription.failing_since = subscription.retry_at = None
    elif outcome.gone:
        log.info("subscription %s answered 410 Gone: deleted", subscription.public_id)
        session.delete(subscription)
    else:
        _note_failure(subscription, outcome, now, settings)
    session.commit()


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
    headers = {
        "webhook-id": job.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signing.signature(secrets, job.message_id, now, body),
    }
    return sender.post(
        job.url,
        body.encode(),
        headers,
        timeout=settings.timeout,
        allow_private=settings.allow_private,
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
        self.busy: Counter[int] = Counter()
        self.in_flight = 0
        self.wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        log.info("dispatcher %s started (%d workers)", self.owner, self.settings.workers)
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
            log.info("dispatcher %s stopped", self.owner)

    def step(self) -> int:
        with self.lock:
            slots = self.settings.workers - self.in_flight
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
            with self.sessions() as session:
                settle(session=session, job=job, outcome=outcome, settings=self.settings)
        except Exception:
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.busy[job.subscription_id] -= 1
            self.wake.set()
