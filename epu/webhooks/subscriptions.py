"""Subscription use cases: a client registers, lists, rotates, tests and replays its own
webhooks. Another client's subscription answers exactly like one that does not exist."""

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from epu.actors import Actor
from epu.errors import (
    SubscriptionNotFound,
    TooManySubscriptions,
    ValidationFailed,
    WebhookUrlRefused,
)
from epu.settings import WebhookSettings
from epu.webhooks import addresses, signing
from epu.webhooks.events import ALL, PING, SUBSCRIBABLE
from epu.webhooks.outbox import DELIVERED, PENDING
from models import (
    Client,
    Event,
    Prescription,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from models.base import utcnow
from models.db import writes

MAX_PER_CLIENT = 10
ROTATION_OVERLAP = timedelta(hours=24)
ACTIVE, SUSPENDED, REQUESTED = "active", "suspended", "requested"
FHIR, HANDSHAKE = "fhir", "handshake"
MAX_EVENTS_PAGE = 100


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def view(subscription: WebhookSubscription, *, backlog: int | None = None) -> dict[str, Any]:
    body = {
        "id": subscription.public_id,
        "url": subscription.url,
        "events": subscription.events,
        "description": subscription.description,
        "status": subscription.status,
        "status_reason": subscription.status_reason,
        "created_at": _iso(subscription.created_at),
        "failures": subscription.failures,
        "next_retry_at": _iso(subscription.retry_at),
        "previous_secret_valid_until": _iso(subscription.previous_secret_until),
        "events_count": subscription.events_count or 0,
    }
    if backlog is not None:
        body["backlog"] = backlog
    return body


def check_url(url: str, settings: WebhookSettings) -> None:
    try:
        addresses.check(url, allow_http=settings.allow_http, allow_private=settings.allow_private)
    except addresses.UrlRefused as refused:
        raise WebhookUrlRefused({"url": str(refused)}) from refused


def check_events(events: list[str]) -> list[str]:
    errors = {
        f"events[{index}]": f"unknown event {name!r}; known: * or {', '.join(SUBSCRIBABLE)}"
        for index, name in enumerate(events)
        if name != ALL and name not in SUBSCRIBABLE
    }
    if not events:
        errors["events"] = "name at least one event, or *"
    if errors:
        raise ValidationFailed(errors)
    return [ALL] if ALL in events else list(dict.fromkeys(events))


@writes
def create(
    *,
    session: Session,
    actor: Actor,
    url: str,
    events: list[str],
    description: str | None,
    settings: WebhookSettings,
    key: bytes,
    kind: str = "webhook",
    fhir: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a subscription; its secret is in the answer this one time only."""
    events = check_events(events)
    check_url(url, settings)  # before the transaction: name resolution may take a while
    session.scalar(select(Client.id).where(Client.id == actor.client_pk).with_for_update())
    count = session.scalar(
        select(func.count()).where(WebhookSubscription.client_id == actor.client_pk)
    )
    if count >= MAX_PER_CLIENT:
        session.rollback()
        raise TooManySubscriptions()
    secret = signing.new_secret()
    subscription = WebhookSubscription(
        public_id="sub-" + secrets.token_hex(10),
        client_id=actor.client_pk,
        kind=kind,
        url=url,
        events=events,
        description=description,
        # A FHIR subscription is requested until its handshake gets a 2xx (Backport IG).
        status=REQUESTED if kind == FHIR else ACTIVE,
        secret=signing.encrypt(secret, key),
        failures=0,
        events_count=0,
        fhir=fhir,
        created_at=utcnow(),
    )
    session.add(subscription)
    if kind == FHIR:
        session.flush()
        session.add(
            WebhookDelivery(
                subscription_id=subscription.id, kind=HANDSHAKE, status=PENDING, attempts=0
            )
        )
    session.commit()
    return {**view(subscription), "secret": secret}


def _own(
    session: Session, actor: Actor, public_id: str, *, lock: bool = False, kind: str | None = None
) -> WebhookSubscription:
    query = select(WebhookSubscription).where(
        WebhookSubscription.public_id == public_id[:32],
        WebhookSubscription.client_id == actor.client_pk,
    )
    if kind:
        query = query.where(WebhookSubscription.kind == kind)
    # NO KEY UPDATE, so that writers' foreign key checks on it do not queue behind us.
    subscription = session.scalar(query.with_for_update(key_share=True) if lock else query)
    if subscription is None:
        session.rollback()
        raise SubscriptionNotFound()
    return subscription


def _backlog(session: Session, subscription: WebhookSubscription) -> int:
    return session.scalar(
        select(func.count()).where(
            WebhookDelivery.subscription_id == subscription.id,
            WebhookDelivery.status == PENDING,
        )
    )


def list_own(*, session: Session, actor: Actor, kind: str = "webhook") -> dict[str, Any]:
    """The caller's subscriptions, oldest first (at most 10)."""
    rows = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.client_id == actor.client_pk, WebhookSubscription.kind == kind)
        .order_by(WebhookSubscription.id)
    )
    items = [view(subscription) for subscription in rows]
    session.rollback()
    return {"items": items}


def read(
    *, session: Session, actor: Actor, public_id: str, kind: str | None = "webhook"
) -> dict[str, Any]:
    subscription = _own(session, actor, public_id, kind=kind)
    body = view(subscription, backlog=_backlog(session, subscription))
    session.rollback()
    return body


def find_own(
    *, session: Session, actor: Actor, public_id: str, kind: str | None = None
) -> WebhookSubscription:
    """The subscription itself, for a protocol layer that shows it its own way (FHIR)."""
    subscription = _own(session, actor, public_id, kind=kind)
    session.expunge(subscription)
    session.rollback()
    return subscription


@writes
def delete(*, session: Session, actor: Actor, public_id: str, kind: str | None = "webhook") -> None:
    """Stop and forget a subscription, with its backlog and its delivery log."""
    subscription = _own(session, actor, public_id, lock=True, kind=kind)
    session.delete(subscription)
    session.commit()


@writes
def rotate_secret(*, session: Session, actor: Actor, public_id: str, key: bytes) -> dict[str, Any]:
    """A new secret signs from now on; the current one keeps signing beside it for 24 h."""
    subscription = _own(session, actor, public_id, lock=True, kind="webhook")
    secret = signing.new_secret()
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_until = utcnow() + ROTATION_OVERLAP
    subscription.secret = signing.encrypt(secret, key)
    body = {**view(subscription), "secret": secret}
    session.commit()
    return body


@writes
def ping(*, session: Session, actor: Actor, public_id: str) -> dict[str, Any]:
    """Queue a `ping` to the subscription's URL; it shows in the deliveries when tried."""
    subscription = _own(session, actor, public_id, lock=True, kind="webhook")
    delivery = WebhookDelivery(
        subscription_id=subscription.id, kind=PING, status=PENDING, attempts=0
    )
    session.add(delivery)
    session.flush()
    body = {"delivery": delivery.id, "status": PENDING}
    session.commit()
    return body


@writes
def resume(
    *, session: Session, actor: Actor, public_id: str, kind: str | None = "webhook"
) -> dict[str, Any]:
    """Back to active after a suspension: the backlog is delivered, oldest first."""
    subscription = _own(session, actor, public_id, lock=True, kind=kind)
    subscription.status = ACTIVE
    subscription.status_reason = None
    subscription.failures = 0
    subscription.failing_since = None
    subscription.retry_at = None
    body = view(subscription, backlog=_backlog(session, subscription))
    session.commit()
    return body


@writes
def redeliver(*, session: Session, actor: Actor, public_id: str, from_event: int) -> dict[str, Any]:
    """Send again every event delivered to this subscription from that event id on."""
    subscription = _own(session, actor, public_id, lock=True, kind="webhook")
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription.id,
            WebhookDelivery.event_id >= from_event,
            WebhookDelivery.status == DELIVERED,
        )
        .values(status=PENDING, delivered_at=None)
    )
    session.commit()
    return {"queued": result.rowcount}


def attempts(
    *,
    session: Session,
    actor: Actor,
    public_id: str,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Delivery attempts, newest first: event, time, HTTP status or error, duration."""
    subscription = _own(session, actor, public_id)
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.subscription_id == subscription.id)
        .order_by(WebhookAttempt.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
            session.rollback()
            raise ValidationFailed({"cursor": "is not a cursor this endpoint gave"})
        query = query.where(WebhookAttempt.id < int(cursor))
    rows = list(session.scalars(query))
    session.rollback()
    items = [
        {
            "event_id": row.event_id,
            "type": row.kind,
            "at": _iso(row.at),
            "http_status": row.http_status,
            "error": row.error,
            "duration_ms": row.duration_ms,
            "response": row.response_excerpt,
        }
        for row in rows[:limit]
    ]
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def numbered_events(
    *, session: Session, actor: Actor, public_id: str, since: int, until: int | None
) -> dict[str, Any]:
    """A FHIR subscription's sent events by number ($events), at most 100 from `since`."""
    subscription = _own(session, actor, public_id, kind=FHIR)
    query = (
        select(WebhookDelivery.number, Event.at, Prescription.code)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .join(Prescription, Prescription.id == WebhookDelivery.prescription_id)
        .where(WebhookDelivery.subscription_id == subscription.id, WebhookDelivery.number >= since)
        .order_by(WebhookDelivery.number)
        .limit(MAX_EVENTS_PAGE)
    )
    if until is not None:
        query = query.where(WebhookDelivery.number <= until)
    events = [{"number": n, "at": at, "code": code} for n, at, code in session.execute(query)]
    body = {**view(subscription), "events": events}
    session.rollback()
    return body
