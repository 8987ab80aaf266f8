"""What the subscription endpoints take and give."""

from marshmallow import Schema, fields, validate

from epu.webhooks.addresses import MAX_URL_LENGTH
from epu.webhooks.events import SUBSCRIBABLE

EVENTS_HELP = "Event names, or ['*'] for all: " + ", ".join(SUBSCRIBABLE)


class SubscriptionIn(Schema):
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_URL_LENGTH),
        metadata={"example": "https://lgc.example.fr/epu/webhooks"},
    )
    events = fields.List(
        fields.String(validate=validate.Length(max=60)),
        required=True,
        validate=validate.Length(max=len(SUBSCRIBABLE) + 1),
        metadata={"description": EVENTS_HELP, "example": ["prescription.taken"]},
    )
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )


class SubscriptionOut(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "active or suspended"})
    status_reason = fields.String(allow_none=True, metadata={"description": "Why it was suspended"})
    created_at = fields.String()
    failures = fields.Integer(metadata={"description": "Failed attempts since the last success"})
    next_retry_at = fields.String(allow_none=True)
    previous_secret_valid_until = fields.String(
        allow_none=True, metadata={"description": "End of the rotation overlap"}
    )
    backlog = fields.Integer(metadata={"description": "Deliveries waiting"})
    secret = fields.String(
        metadata={"description": "The signing secret (Standard Webhooks): shown only once"}
    )


class SubscriptionPageOut(Schema):
    items = fields.List(fields.Nested(SubscriptionOut))


class DeliveriesQuery(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(max=20))


class AttemptOut(Schema):
    event_id = fields.Integer(allow_none=True, metadata={"description": "None for a ping"})
    type = fields.String()
    at = fields.String()
    http_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()
    response = fields.String(
        allow_none=True, metadata={"description": "The first KiB of the receiver's answer"}
    )


class AttemptPageOut(Schema):
    items = fields.List(fields.Nested(AttemptOut))
    next_cursor = fields.String(allow_none=True)


class RedeliverIn(Schema):
    from_event = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=2**62)
    )


class RedeliverOut(Schema):
    queued = fields.Integer()


class PingOut(Schema):
    delivery = fields.Integer()
    status = fields.String()
