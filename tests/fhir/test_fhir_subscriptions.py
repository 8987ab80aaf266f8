"""FHIR Subscription (Subscriptions R5 Backport IG on R4): handshake, id-only notifications
to a real receiver, $status and $events, the published topic, and the refusals."""

import time

import pytest

from epu.webhooks import fhir as topic
from tests.fhir.support import parse_both
from tests.webhooks import flows

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


def subscription(endpoint: str, **channel) -> dict:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "Suivi des prescriptions",
        "criteria": topic.TOPIC_URL,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}
                ]
            },
            **channel,
        },
    }


def parameters(bundle: dict) -> dict[str, object]:
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters"
    found: dict[str, object] = {}
    for parameter in status["parameter"]:
        value = next((v for k, v in parameter.items() if k.startswith("value")), None)
        if parameter["name"] == "notification-event":
            parts = {
                p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                for p in parameter["part"]
            }
            found.setdefault("events", []).append(parts)
        else:
            found[parameter["name"]] = value
    return found


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_subscription_handshake_then_id_only_notifications(
    fhir, http, prescriber, lab, hooks, receiver, run_dispatcher
):
    created = fhir.post(
        "/fhir/Subscription",
        prescriber,
        json=subscription(receiver.url("/fhir"), header=["Authorization: Bearer lgc-secret"]),
    )
    assert created.status_code == 201, created.json
    resource = created.json
    assert resource["status"] == "requested"
    assert created.headers["Location"].endswith(f"/fhir/Subscription/{resource['id']}")
    run_dispatcher()
    handshake = receiver.wait_for("/fhir", 1)[0]
    assert handshake.headers["Content-Type"] == "application/fhir+json"
    assert handshake.headers["Authorization"] == "Bearer lgc-secret"
    bundle = handshake.json
    parse_both(bundle)
    assert bundle["type"] == "history"
    assert parameters(bundle)["type"] == "handshake"
    assert parameters(bundle)["topic"] == topic.TOPIC_URL
    read = lambda: fhir.get(f"/fhir/Subscription/{resource['id']}", prescriber).json  # noqa: E731
    wait_until(lambda: read()["status"] == "active")

    code = flows.create(http, prescriber)
    flows.scan(http, lab, code)
    notifications = [item.json for item in receiver.wait_for("/fhir", 3)[1:]]
    numbers = []
    for bundle in notifications:
        parse_both(bundle)
        found = parameters(bundle)
        assert found["type"] == "event-notification"
        (event,) = found["events"]
        assert event["focus"]["reference"].endswith(f"/fhir/Task/{code}")
        numbers.append(event["event-number"])
        assert len(bundle["entry"]) == 1  # id-only: nothing of the prescription itself
    assert numbers == ["1", "2"]


def test_status_and_events_recover_after_downtime(
    fhir, http, prescriber, hooks, receiver, run_dispatcher
):
    created = fhir.post(
        "/fhir/Subscription", prescriber, json=subscription(receiver.url("/fhir"))
    ).json
    run_dispatcher()
    codes = [flows.create(http, prescriber) for _ in range(3)]
    receiver.wait_for("/fhir", 4)
    status = fhir.get(f"/fhir/Subscription/{created['id']}/$status", prescriber)
    assert status.status_code == 200
    found = parameters({"entry": [status.json["entry"][0]]})
    assert found["type"] == "query-status"
    assert found["status"] == "active"
    assert found["events-since-subscription-start"] == "3"
    events = fhir.get(
        f"/fhir/Subscription/{created['id']}/$events?eventsSinceNumber=2&eventsUntilNumber=3",
        prescriber,
    )
    assert events.status_code == 200
    listed = parameters(events.json)
    assert listed["type"] == "query-event"
    assert [event["event-number"] for event in listed["events"]] == ["2", "3"]
    focus = {event["focus"]["reference"].rsplit("/", 1)[1] for event in listed["events"]}
    assert focus <= set(codes) and len(focus) == 2
    bad = fhir.get(f"/fhir/Subscription/{created['id']}/$events?eventsSinceNumber=x", prescriber)
    assert bad.status_code == 400


def test_a_subscription_is_its_owners_only(
    fhir, prescriber, other_prescriber, lab, hooks, receiver
):
    created = fhir.post("/fhir/Subscription", prescriber, json=subscription(receiver.url())).json
    for party in (other_prescriber, lab):
        for path in ("", "/$status", "/$events"):
            assert fhir.get(f"/fhir/Subscription/{created['id']}{path}", party).status_code == 404
        assert (
            fhir.request("DELETE", f"/fhir/Subscription/{created['id']}", party).status_code == 404
        )
        assert fhir.get("/fhir/Subscription", party).json.get("entry", []) == []
    own = fhir.get("/fhir/Subscription", prescriber).json
    assert [entry["resource"]["id"] for entry in own["entry"]] == [created["id"]]
    assert (
        fhir.request("DELETE", f"/fhir/Subscription/{created['id']}", prescriber).status_code == 200
    )
    assert fhir.get(f"/fhir/Subscription/{created['id']}", prescriber).status_code == 404


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"criteria": "Task?status=completed"}, "Subscription.criteria"),
        (
            {"channel": {"type": "websocket", "endpoint": "https://x.example"}},
            "Subscription.channel.type",
        ),
        ({"end": "2027-01-01T00:00:00Z"}, "Subscription.end"),
    ],
)
def test_what_epu_does_not_do_is_refused(fhir, prescriber, hooks, receiver, change, expression):
    body = {**subscription(receiver.url()), **change}
    refused = fhir.post("/fhir/Subscription", prescriber, json=body)
    assert refused.status_code == 422
    assert refused.json["issue"][0]["expression"] == [expression]


def test_full_resource_payloads_and_unsafe_endpoints_are_refused(fhir, prescriber, hooks, receiver):
    full = subscription(receiver.url())
    full["channel"]["_payload"]["extension"][0]["valueCode"] = "full-resource"
    assert fhir.post("/fhir/Subscription", prescriber, json=full).status_code == 422
    hooks(allow_http=False, allow_private=False)
    unsafe = fhir.post("/fhir/Subscription", prescriber, json=subscription("https://localhost/x"))
    assert unsafe.status_code == 422
    assert "loopback" in unsafe.json["issue"][0]["diagnostics"]
    header = subscription("https://hooks.example.org/x", header=["Host: evil.example"])
    assert fhir.post("/fhir/Subscription", prescriber, json=header).status_code == 422


def test_the_topic_is_published_and_declared(fhir):
    basic = fhir.get(f"/fhir/Basic/{topic.TOPIC_ID}")
    assert basic.status_code == 200
    urls = {ext["url"]: ext for ext in basic.json["extension"]}
    assert (
        urls["http://hl7.org/fhir/StructureDefinition/artifact-url"]["valueUri"] == topic.TOPIC_URL
    )
    statement = fhir.get("/fhir/metadata").json
    resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    assert resource["extension"][0]["valueCanonical"] == topic.TOPIC_URL
    assert BACKPORT + "backport-subscription" in resource["supportedProfile"]
