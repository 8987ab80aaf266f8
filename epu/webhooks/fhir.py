"""FHIR R4 Subscriptions (Subscriptions R5 Backport IG): the topic EPU publishes and the
notification Bundles sent to FHIR subscribers, built as plain data (no Flask here).

One topic: any change of a prescription's Task that the subscriber may see (the same events
and the same visibility as the JSON webhooks), payload `id-only`: the focus is `Task/<code>`,
read with the subscriber's own token.
"""

from datetime import datetime
from typing import Any

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SUBSCRIPTION_PROFILE = BACKPORT + "backport-subscription"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"
TOPIC_PROFILE = "http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic"
R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC_ID = "epu-prescription-task"
TOPIC_URL = f"https://epu.esante.gouv.fr/fhir/SubscriptionTopic/{TOPIC_ID}"
ID_ONLY = "id-only"
FHIR_JSON = "application/fhir+json"
HANDSHAKE = "handshake"
# EPU's subscription statuses as FHIR R4 Subscription.status codes.
FHIR_STATUS = {"requested": "requested", "active": "active", "suspended": "error"}


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    *,
    base: str,
    subscription_id: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: list[dict[str, Any]] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus (a Parameters resource in R4)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base}/Subscription/{subscription_id}"},
        },
        {"name": "topic", "valueCanonical": TOPIC_URL},
        {"name": "status", "valueCode": FHIR_STATUS.get(status, status)},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        parameters.append(
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(event["number"])},
                    {"name": "timestamp", "valueInstant": _instant(event["at"])},
                    {
                        "name": "focus",
                        "valueReference": {"reference": f"{base}/Task/{event['code']}"},
                    },
                ],
            }
        )
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification(
    *,
    base: str,
    subscription_id: str,
    at: datetime,
    status: dict[str, Any],
    bundle_type: str = "history",
) -> dict[str, Any]:
    """A notification Bundle: the status first (history Bundles need a request and response
    on each entry: the status entry is shaped as an answer to $status)."""
    entry: dict[str, Any] = {"resource": status}
    if bundle_type == "history":
        entry["request"] = {
            "method": "GET",
            "url": f"{base}/Subscription/{subscription_id}/$status",
        }
        entry["response"] = {"status": "200"}
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": bundle_type,
        "timestamp": _instant(at),
        "entry": [entry],
    }


def topic(base: str) -> dict[str, Any]:
    """The topic, as the IG publishes topics in R4: a Basic resource with R5 extensions."""
    return {
        "resourceType": "Basic",
        "id": TOPIC_ID,
        "meta": {"profile": [TOPIC_PROFILE]},
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/artifact-url", "valueUri": TOPIC_URL},
            {"url": R5 + "name", "valueString": "EpuPrescriptionTask"},
            {"url": R5 + "title", "valueString": "Changes to an EPU prescription's Task"},
            {"url": R5 + "status", "valueCode": "active"},
            {
                "url": R5 + "description",
                "valueMarkdown": "A prescription (its Task, id = the prescription code) was "
                "created, taken, released, adapted, reported, completed, renewed, cancelled, "
                "expired, sampled, or a proposal was made or answered. Each subscriber gets "
                "only the prescriptions it may read, as the JSON API shows them.",
            },
            {
                "url": R5 + "resourceTrigger",
                "extension": [
                    {"url": "description", "valueMarkdown": "Any change of the Task."},
                    {"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/Task"},
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {"url": "supportedInteraction", "valueCode": "update"},
                ],
            },
            {
                "url": R5 + "notificationShape",
                "extension": [{"url": "resource", "valueUri": "Task"}],
            },
        ],
        "modifierExtension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/artifact-status",
                "valueCode": "active",
            }
        ],
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }
