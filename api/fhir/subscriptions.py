"""FHIR Subscription (Subscriptions R5 Backport IG on R4): topic-based, rest-hook, id-only.

The same subscriptions, outbox and dispatcher as /api/v1/subscriptions; this module only
translates. A new subscription is `requested` until its handshake notification gets a 2xx.
"""

import json
import re
from typing import Any

from flask import Blueprint, request

from api.auth import current_actor, require
from api.context import settings
from api.extensions import db_session
from api.fhir import wire
from api.fhir.outcome import FhirError, Issue, invalid, register_blueprint_handlers
from epu.actors import ROLES
from epu.errors import SubscriptionNotFound
from epu.webhooks import fhir, signing, subscriptions
from models.base import utcnow

blp = Blueprint("fhir_subscriptions", __name__, url_prefix="/fhir")
blp.before_request(wire.check_media_types)
register_blueprint_handlers(blp)
KIND = "fhir"
MAX_HEADERS = 4
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([\x20-\x7e]{1,1000})$")
_RESERVED_HEADERS = {
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}


def _route(rule: str, *methods: str):
    return blp.route(rule, methods=list(methods), provide_automatic_options=False)


def _not_found() -> FhirError:
    return FhirError(404, [Issue("No subscription with this id is available to you.", "not-found")])


def _payload_content(channel: dict[str, Any]) -> str:
    extensions = (channel.get("_payload") or {}).get("extension") or []
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("url") == fhir.PAYLOAD_CONTENT:
            return str(extension.get("valueCode"))
    return fhir.ID_ONLY


def _headers(channel: dict[str, Any]) -> list[str]:
    headers = channel.get("header") or []
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        raise invalid(
            f"At most {MAX_HEADERS} headers, as 'Name: value'.", "Subscription.channel.header"
        )
    for index, header in enumerate(headers):
        match = _HEADER.match(header) if isinstance(header, str) else None
        where = f"Subscription.channel.header[{index}]"
        if match is None:
            raise invalid("A header is 'Name: value' in printable ASCII.", where)
        if match.group(1).lower() in _RESERVED_HEADERS:
            raise invalid(f"The header {match.group(1)} is set by EPU.", where)
    return headers


def _parse(body: dict[str, Any]) -> tuple[str, list[str], str | None]:
    if body.get("resourceType") != "Subscription":
        raise invalid(
            f"Expected a Subscription, not {body.get('resourceType')!r}.",
            status=400,
            code="structure",
        )
    if body.get("criteria") != fhir.TOPIC_URL:
        raise invalid(
            f"criteria must be the topic {fhir.TOPIC_URL} (GET /fhir/Basic/{fhir.TOPIC_ID}).",
            "Subscription.criteria",
        )
    if (body.get("_criteria") or {}).get("extension"):
        raise invalid(
            "Filter criteria are not supported: the topic sends the Tasks you may read.",
            "Subscription.criteria",
        )
    channel = body.get("channel")
    if not isinstance(channel, dict):
        raise invalid("channel is required.", "Subscription.channel")
    if channel.get("type") != "rest-hook":
        raise invalid("Only the rest-hook channel is supported.", "Subscription.channel.type")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise invalid("channel.endpoint is required.", "Subscription.channel.endpoint")
    if channel.get("payload") not in (fhir.FHIR_JSON, None):
        raise invalid(f"payload must be {fhir.FHIR_JSON}.", "Subscription.channel.payload")
    if _payload_content(channel) != fhir.ID_ONLY:
        raise invalid(
            "Only id-only payloads are sent (no health data in notifications).",
            "Subscription.channel.payload",
        )
    if body.get("end"):
        raise invalid(
            "end is not supported: DELETE the subscription to stop it.", "Subscription.end"
        )
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise invalid("reason is a text of at most 200 characters.", "Subscription.reason")
    return endpoint, _headers(channel), reason


def resource(subscription: dict[str, Any]) -> dict[str, Any]:
    """A subscription (as the domain shows it) as a backport Subscription resource."""
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": subscription["id"],
        "meta": {"profile": [fhir.SUBSCRIPTION_PROFILE]},
        "status": fhir.FHIR_STATUS.get(subscription["status"], subscription["status"]),
        "reason": subscription["description"] or "EPU prescription events",
        "criteria": fhir.TOPIC_URL,
        "channel": {
            "type": "rest-hook",
            "endpoint": subscription["url"],
            "payload": fhir.FHIR_JSON,
            "_payload": {"extension": [{"url": fhir.PAYLOAD_CONTENT, "valueCode": fhir.ID_ONLY}]},
        },
    }
    if subscription["status_reason"]:
        body["error"] = subscription["status_reason"]
    return body


@_route("/Subscription", "POST")
@require(*ROLES)
def create():
    endpoint, headers, reason = _parse(wire.json_body())
    key = signing.encryption_key(settings())
    created = subscriptions.create(
        session=db_session(),
        actor=current_actor(),
        url=endpoint,
        events=["*"],
        description=reason,
        settings=settings().webhooks,
        key=key,
        kind=KIND,
        fhir={
            "base": wire.base_url(),
            "headers": signing.encrypt(json.dumps(headers), key) if headers else None,
        },
    )
    location = wire.absolute(f"Subscription/{created['id']}")
    return wire.respond(resource(created), 201, Location=location)


@_route("/Subscription", "GET")
@require(*ROLES)
def search():
    own = subscriptions.list_own(session=db_session(), actor=current_actor(), kind=KIND)["items"]
    return wire.respond(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(own),
            "entry": [
                {
                    "fullUrl": wire.absolute(f"Subscription/{item['id']}"),
                    "resource": resource(item),
                    "search": {"mode": "match"},
                }
                for item in own
            ],
        }
    )


def _read(subscription_id: str) -> dict[str, Any]:
    try:
        return subscriptions.read(
            session=db_session(), actor=current_actor(), public_id=subscription_id, kind=KIND
        )
    except SubscriptionNotFound as error:
        raise _not_found() from error


@_route("/Subscription/<subscription_id>", "GET")
@require(*ROLES)
def read(subscription_id):
    return wire.respond(resource(_read(subscription_id)))


@_route("/Subscription/<subscription_id>", "DELETE")
@require(*ROLES)
def delete(subscription_id):
    try:
        subscriptions.delete(
            session=db_session(), actor=current_actor(), public_id=subscription_id, kind=KIND
        )
    except SubscriptionNotFound as error:
        raise _not_found() from error
    return wire.respond(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "informational", "diagnostics": "Deleted."}
            ],
        }
    )


@_route("/Subscription/<subscription_id>/$status", "GET", "POST")
@require(*ROLES)
def status(subscription_id):
    subscription = _read(subscription_id)
    parameters = fhir.status_parameters(
        base=wire.base_url(),
        subscription_id=subscription["id"],
        status=subscription["status"],
        kind="query-status",
        events_since_start=subscription["events_count"],
        error=subscription["status_reason"],
    )
    return wire.respond(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [{"resource": parameters, "search": {"mode": "match"}}],
        }
    )


def _number(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None and request.is_json:
        for parameter in (wire.json_body(required=False) or {}).get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name") == name:
                raw = parameter.get("valueString")
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise invalid(f"{name} must be an event number.", name, status=400, code="invalid")
    return int(raw)


@_route("/Subscription/<subscription_id>/$events", "GET", "POST")
@require(*ROLES)
def events(subscription_id):
    since, until = _number("eventsSinceNumber"), _number("eventsUntilNumber")
    try:
        found = subscriptions.numbered_events(
            session=db_session(),
            actor=current_actor(),
            public_id=subscription_id,
            since=since or 1,
            until=until,
        )
    except SubscriptionNotFound as error:
        raise _not_found() from error
    parameters = fhir.status_parameters(
        base=wire.base_url(),
        subscription_id=found["id"],
        status=found["status"],
        kind="query-event",
        events_since_start=found["events_count"],
        events=found["events"],
    )
    return wire.respond(
        fhir.notification(
            base=wire.base_url(), subscription_id=found["id"], at=utcnow(), status=parameters
        )
    )


@_route(f"/Basic/{fhir.TOPIC_ID}", "GET")
def topic():
    """The topic is public, like the CapabilityStatement that names it."""
    return wire.respond(fhir.topic(wire.base_url()))
