"""The subscriptions API: registration, ownership, limits, secrets, and every URL refusal."""

import pytest
from sqlalchemy import select

from models import WebhookDelivery, WebhookSubscription

HOOKS = "/api/v1/subscriptions"


def test_a_subscription_is_created_listed_read_and_deleted(http, prescriber, hooks, receiver):
    created = http.post(
        HOOKS,
        json={"url": receiver.url(), "events": ["prescription.taken"], "description": "LGC"},
        headers=prescriber.headers,
    )
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "active"
    assert body["events"] == ["prescription.taken"]
    assert body["secret"].startswith("whsec_")
    listed = http.get(HOOKS, headers=prescriber.headers).json["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]
    read = http.get(f"{HOOKS}/{body['id']}", headers=prescriber.headers)
    assert read.status_code == 200
    assert read.json["backlog"] == 0 and "secret" not in read.json
    assert http.delete(f"{HOOKS}/{body['id']}", headers=prescriber.headers).status_code == 204
    assert http.get(f"{HOOKS}/{body['id']}", headers=prescriber.headers).status_code == 404


def test_the_secret_is_stored_encrypted(http, prescriber, subscribe, receiver, session):
    created = subscribe(prescriber, receiver.url())
    stored = session.scalar(select(WebhookSubscription))
    raw = created["secret"].removeprefix("whsec_")
    assert raw not in stored.secret and created["secret"] not in stored.secret
    assert stored.secret.startswith("v1:")


def test_another_clients_subscription_answers_like_one_that_does_not_exist(
    http, prescriber, other_prescriber, lab, subscribe, receiver
):
    mine = subscribe(prescriber, receiver.url())["id"]
    for party in (other_prescriber, lab):
        for method, path in (
            ("get", f"{HOOKS}/{mine}"),
            ("delete", f"{HOOKS}/{mine}"),
            ("post", f"{HOOKS}/{mine}/rotate-secret"),
            ("post", f"{HOOKS}/{mine}/test"),
            ("post", f"{HOOKS}/{mine}/resume"),
            ("get", f"{HOOKS}/{mine}/deliveries"),
        ):
            theirs = getattr(http, method)(path, headers=party.headers)
            unknown = getattr(http, method)(path.replace(mine, "sub_nope"), headers=party.headers)
            assert theirs.status_code == unknown.status_code == 404
            assert theirs.json == unknown.json
        assert http.get(HOOKS, headers=party.headers).json["items"] == []
    assert http.get(f"{HOOKS}/{mine}", headers=prescriber.headers).status_code == 200


def test_at_most_ten_subscriptions_per_client(http, lab, subscribe, receiver):
    for index in range(10):
        subscribe(lab, receiver.url(f"/hook{index}"))
    refused = http.post(HOOKS, json={"url": receiver.url(), "events": ["*"]}, headers=lab.headers)
    assert refused.status_code == 409
    assert refused.json["code"] == "too_many_subscriptions"


def test_unknown_events_are_refused_by_name(http, prescriber, hooks, receiver):
    refused = http.post(
        HOOKS,
        json={"url": receiver.url(), "events": ["prescription.taken", "prescription.eaten"]},
        headers=prescriber.headers,
    )
    assert refused.status_code == 422
    assert "prescription.eaten" in refused.json["errors"]["events[1]"]
    empty = http.post(HOOKS, json={"url": receiver.url(), "events": []}, headers=prescriber.headers)
    assert empty.status_code == 422 and "events" in empty.json["errors"]


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_24_hours(
    http, prescriber, subscribe, receiver
):
    created = subscribe(prescriber, receiver.url())
    rotated = http.post(f"{HOOKS}/{created['id']}/rotate-secret", headers=prescriber.headers)
    assert rotated.status_code == 200
    assert rotated.json["secret"] != created["secret"]
    assert rotated.json["previous_secret_valid_until"] is not None


def test_ping_is_queued_and_redeliver_counts(http, prescriber, subscribe, receiver, session):
    created = subscribe(prescriber, receiver.url())
    ping = http.post(f"{HOOKS}/{created['id']}/test", headers=prescriber.headers)
    assert ping.status_code == 202
    assert session.scalar(select(WebhookDelivery.kind)) == "ping"
    again = http.post(
        f"{HOOKS}/{created['id']}/redeliver", json={"from_event": 0}, headers=prescriber.headers
    )
    assert again.status_code == 202 and again.json == {"queued": 0}
    bad = http.post(
        f"{HOOKS}/{created['id']}/redeliver", json={"from_event": "x"}, headers=prescriber.headers
    )
    assert bad.status_code == 422


def test_deliveries_cursor_must_be_one_it_gave(http, prescriber, subscribe, receiver):
    created = subscribe(prescriber, receiver.url())
    page = http.get(f"{HOOKS}/{created['id']}/deliveries?cursor=abc", headers=prescriber.headers)
    assert page.status_code == 422
    assert (
        http.get(
            f"{HOOKS}/{created['id']}/deliveries?limit=0", headers=prescriber.headers
        ).status_code
        == 422
    )


# ---- URLs EPU refuses to call ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.org/x", "https"),
        ("ftp://hooks.example.org/x", "https"),
        ("https://user:pass@hooks.example.org/x", "credentials"),
        ("https://user@hooks.example.org/x", "credentials"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://localhost/x", "loopback"),  # a name that resolves to 127.0.0.1
        ("https://[::1]/x", "loopback"),
        ("https://[::ffff:127.0.0.1]/x", "loopback"),
        ("https://2130706433/x", "loopback"),  # 127.0.0.1 written as one number
        ("https://0.0.0.0/x", "reserved"),
        ("https://10.1.2.3/x", "private"),
        ("https://192.168.0.10/x", "private"),
        ("https://172.16.5.4/x", "private"),
        ("https://[fc00::1]/x", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://224.0.0.1/x", "multicast"),
        ("https://[ff02::1]/x", "multicast"),
        ("https://240.0.0.1/x", "reserved"),
        ("https://100.64.0.1/x", "reserved"),
        ("https://[::ffff:10.0.0.1]/x", "private"),
        ("https://[64:ff9b::7f00:1]/x", "loopback"),
        ("https://[2002:7f00:1::1]/x", "loopback"),
        ("https://host.invalid/x", "does not resolve"),
        ("https:///x", "host"),
        ("https://exa mple.org/x", "spaces"),
        ("https://hooks.example.org:99999/x", "valid URL"),
        ("https://hooks.example.org/x#frag", "fragment"),
        ("https://" + "a" * 2000 + ".org/", "2000"),
    ],
)
def test_unsafe_urls_are_refused(http, prescriber, hooks, url, why):
    hooks(allow_http=False, allow_private=False)
    refused = http.post(HOOKS, json={"url": url, "events": ["*"]}, headers=prescriber.headers)
    assert refused.status_code == 422, refused.json
    assert why in refused.json["errors"]["url"], refused.json
    assert http.get(HOOKS, headers=prescriber.headers).json["items"] == []


def test_allow_private_lifts_the_address_rule_but_not_https(http, prescriber, hooks, receiver):
    hooks(allow_http=False, allow_private=True)
    accepted = http.post(
        HOOKS, json={"url": "https://localhost/x", "events": ["*"]}, headers=prescriber.headers
    )
    assert accepted.status_code == 201
    refused = http.post(
        HOOKS, json={"url": receiver.url(), "events": ["*"]}, headers=prescriber.headers
    )
    assert refused.status_code == 422 and "https" in refused.json["errors"]["url"]
