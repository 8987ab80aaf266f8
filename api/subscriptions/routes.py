from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.context import settings
from api.docs import WITH_BODY, WITH_QUERY, refusals
from api.extensions import db_session
from api.subscriptions.schemas import (
    AttemptPageOut,
    DeliveriesQuery,
    PingOut,
    RedeliverIn,
    RedeliverOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPageOut,
)
from epu.actors import ROLES
from epu.webhooks import signing, subscriptions

blp = Blueprint(
    "subscriptions",
    __name__,
    url_prefix="/api/v1/subscriptions",
    description="Webhooks: events pushed to the client, signed (Standard Webhooks)",
)
NOT_FOUND = "No such subscription of the caller"


def _key() -> bytes:
    return signing.encryption_key(settings())


@blp.post("")
@blp.arguments(SubscriptionIn)
@blp.response(201, SubscriptionOut)
@refusals(
    blp,
    {
        409: "The client already holds 10 subscriptions",
        422: "Invalid body; or the URL is refused (not https, credentials, a host that does "
        "not resolve or resolves to a loopback, private, link-local, multicast or reserved "
        "address)",
    },
    WITH_BODY,
)
@require(*ROLES)
def create(data):
    """Subscribe a URL to events; the signing secret is in this answer only"""
    return subscriptions.create(
        session=db_session(),
        actor=current_actor(),
        url=data["url"],
        events=data["events"],
        description=data["description"],
        settings=settings().webhooks,
        key=_key(),
    )


@blp.get("")
@blp.response(200, SubscriptionPageOut)
@refusals(blp, {})
@require(*ROLES)
def list_own():
    """The caller's subscriptions"""
    return subscriptions.list_own(session=db_session(), actor=current_actor())


@blp.get("/<subscription_id>")
@blp.response(200, SubscriptionOut)
@refusals(blp, {404: NOT_FOUND})
@require(*ROLES)
def read(subscription_id):
    """One subscription, with its status and backlog"""
    return subscriptions.read(
        session=db_session(), actor=current_actor(), public_id=subscription_id
    )


@blp.delete("/<subscription_id>")
@blp.response(204)
@refusals(blp, {404: NOT_FOUND})
@require(*ROLES)
def delete(subscription_id):
    """Delete a subscription and its backlog"""
    subscriptions.delete(session=db_session(), actor=current_actor(), public_id=subscription_id)


@blp.post("/<subscription_id>/rotate-secret")
@blp.response(200, SubscriptionOut)
@refusals(blp, {404: NOT_FOUND})
@require(*ROLES)
def rotate_secret(subscription_id):
    """A new secret; the old one keeps signing beside it for 24 hours"""
    return subscriptions.rotate_secret(
        session=db_session(), actor=current_actor(), public_id=subscription_id, key=_key()
    )


@blp.post("/<subscription_id>/test")
@blp.response(202, PingOut)
@refusals(blp, {404: NOT_FOUND})
@require(*ROLES)
def test(subscription_id):
    """Send a ping; its outcome shows in the deliveries"""
    return subscriptions.ping(
        session=db_session(), actor=current_actor(), public_id=subscription_id
    )


@blp.post("/<subscription_id>/resume")
@blp.response(200, SubscriptionOut)
@refusals(blp, {404: NOT_FOUND})
@require(*ROLES)
def resume(subscription_id):
    """Resume a suspended subscription: its backlog is delivered, in order"""
    return subscriptions.resume(
        session=db_session(), actor=current_actor(), public_id=subscription_id
    )


@blp.get("/<subscription_id>/deliveries")
@blp.arguments(DeliveriesQuery, location="query")
@blp.response(200, AttemptPageOut)
@refusals(blp, {404: NOT_FOUND}, WITH_QUERY)
@require(*ROLES)
def deliveries(query, subscription_id):
    """Delivery attempts, newest first, with a cursor"""
    return subscriptions.attempts(
        session=db_session(), actor=current_actor(), public_id=subscription_id, **query
    )


@blp.post("/<subscription_id>/redeliver")
@blp.arguments(RedeliverIn)
@blp.response(202, RedeliverOut)
@refusals(blp, {404: NOT_FOUND}, WITH_BODY)
@require(*ROLES)
def redeliver(data, subscription_id):
    """Send again the events delivered from that event id on"""
    return subscriptions.redeliver(
        session=db_session(),
        actor=current_actor(),
        public_id=subscription_id,
        from_event=data["from_event"],
    )
