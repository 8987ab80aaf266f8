"""What the CapabilityStatement declares for FHIR subscriptions (Backport IG)."""

from typing import Any

from epu.webhooks import fhir

OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"


def subscription_resources() -> list[dict[str, Any]]:
    """What the CapabilityStatement declares for subscriptions."""
    return [
        {
            "type": "Subscription",
            "extension": [{"url": fhir.TOPIC_CANONICAL, "valueCanonical": fhir.TOPIC_URL}],
            "supportedProfile": [fhir.SUBSCRIPTION_PROFILE],
            "documentation": "Topic-based (Subscriptions R5 Backport), rest-hook, id-only. "
            "A subscription is requested until its handshake gets a 2xx; notifications are "
            "history Bundles whose SubscriptionStatus names the focus Task/<code>.",
            "interaction": [{"code": c} for c in ("create", "read", "delete", "search-type")],
            "operation": [
                {
                    "name": "status",
                    "definition": OPERATIONS + "backport-subscription-status",
                },
                {
                    "name": "events",
                    "definition": OPERATIONS + "backport-subscription-events",
                },
            ],
        },
        {
            "type": "Basic",
            "documentation": f"Only the subscription topic: GET /fhir/Basic/{fhir.TOPIC_ID}.",
            "interaction": [{"code": "read"}],
        },
    ]
