"""Delivery to a real receiver on loopback: every event, signatures, visibility, order,
retries, suspension, 410, slow receivers, and the outgoing-request rules at delivery time."""

import os
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update

from epu import history
from epu.actors import Actor
from epu.audit import record
from epu.webhooks.dispatcher import dispatcher_engine
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
from tests.webhooks import flows
from tests.webhooks import receiver as receivers

HOOKS = "/api/v1/subscriptions"


def types_by_code(received) -> dict[str, list[str]]:
    by_code: dict[str, list[str]] = {}
    for item in received:
        body = item.json
        by_code.setdefault(body["prescription"]["code"], []).append(body["type"])
    return by_code


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached after {timeout}s")


@writes
def push(*, session, code: str, kind: str, party) -> None:
    """Record an audit event as a use case would (one transaction, the prescription locked)."""
    client = session.scalar(select(Client).where(Client.client_id == party.client_id))
    actor = Actor(client.id, client.role, client.identifier, client.name)
    prescription = session.scalar(
        select(Prescription).where(Prescription.code == code).with_for_update()
    )
    record(session, prescription, kind, actor, {})
    session.commit()


@writes
def backdate(*, session, code: str) -> None:
    session.execute(
        update(Prescription)
        .where(Prescription.code == code)
        .values(expires_at=utcnow() - timedelta(days=1))
    )
    session.commit()


def test_every_event_reaches_its_subscribers_signed_with_no_health_data(
    http, session, prescriber, lab, subscribe, receiver, run_dispatcher
):
    to_prescriber = subscribe(prescriber, receiver.url("/lgc"))
    to_lab = subscribe(lab, receiver.url("/sgl"))
    run_dispatcher()
    renewable = flows.create(http, prescriber, **flows.RENEWED_BODY)
    taken = flows.scan(http, lab, renewable)
    modified = flows.modify(http, lab, renewable, taken["version"])
    flows.done(http, lab, renewable, *[line["id"] for line in modified["lines"]])  # renewed
    flows.scan(http, lab, renewable)
    flows.done(http, lab, renewable, "L1")  # completed
    cancelled = flows.create(http, prescriber)
    flows.cancel(http, prescriber, cancelled)
    released = flows.create(http, prescriber)
    flows.scan(http, lab, released)
    flows.release(http, lab, released)
    expired = flows.create(http, prescriber)
    backdate(session=session, code=expired)
    history.expire_due(session=session)
    proposals = flows.create(http, prescriber)
    flows.scan(http, lab, proposals)
    # Events other issues add (proposals, samplings), pushed by name already.
    for kind, who in (
        ("proposed", lab),
        ("proposal_accepted", prescriber),
        ("proposal_superseded", lab),
        ("sampled", lab),
        ("applied_urgent", lab),
    ):
        push(session=session, code=proposals, kind=kind, party=who)

    line_events = ["prescription.line_reported"] * 3
    expected_lab = {
        renewable: [
            "prescription.taken",
            "prescription.modified",  # the line added
            "prescription.modified",  # applied at once (mode urgent), shown as such
            *line_events,
            "prescription.renewed",
            "prescription.taken",
            "prescription.line_reported",
            "prescription.completed",
        ],
        released: ["prescription.taken", "prescription.released"],
        proposals: [
            "prescription.taken",
            "prescription.proposed",
            "prescription.proposal_answered",
            "prescription.proposal_withdrawn",
            "prescription.sampled",
            "prescription.modified",
        ],
    }
    expected_prescriber = {
        **{code: ["prescription.created", *types] for code, types in expected_lab.items()},
        cancelled: ["prescription.created", "prescription.cancelled"],
        expired: ["prescription.created", "prescription.expired"],
    }
    got_lab = receiver.wait_for("/sgl", sum(map(len, expected_lab.values())))
    got_prescriber = receiver.wait_for("/lgc", sum(map(len, expected_prescriber.values())))
    time.sleep(0.3)  # nothing more arrives
    assert types_by_code(receiver.at("/sgl")) == expected_lab
    assert types_by_code(receiver.at("/lgc")) == expected_prescriber
    for items, secret in ((got_lab, to_lab["secret"]), (got_prescriber, to_prescriber["secret"])):
        for item in items:
            assert item.verifies_with(secret)
            assert not item.verifies_with(
                to_lab["secret"] if secret != to_lab["secret"] else to_prescriber["secret"]
            )
            body = item.json
            assert set(body) == {"type", "id", "at", "prescription"}
            assert set(body["prescription"]) == {"code", "version", "status"}
            assert item.headers["webhook-id"] == f"evt_{body['id']}"
    last = [i.json for i in got_prescriber if i.json["prescription"]["code"] == proposals][-1]
    assert last["prescription"]["status"] == "in_progress"
    completed = [i.json for i in got_lab if i.json["type"] == "prescription.completed"][0]
    assert completed["prescription"]["status"] == "completed"


def test_a_subscription_gets_only_the_events_it_asked_for(
    http, prescriber, lab, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url("/taken"), events=["prescription.taken"])
    subscribe(prescriber, receiver.url("/all"))
    run_dispatcher()
    code = flows.create(http, prescriber)
    flows.scan(http, lab, code)
    receiver.wait_for("/all", 2)
    assert [i.json["type"] for i in receiver.wait_for("/taken", 1)] == ["prescription.taken"]


def test_objection_hides_the_laboratory_doings_from_the_prescriber_and_labs_see_only_theirs(
    http, prescriber, lab, other_lab, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url("/lgc"))
    subscribe(lab, receiver.url("/sgl"))
    subscribe(other_lab, receiver.url("/other"))
    run_dispatcher()
    withheld = flows.create(http, prescriber)
    flows.scan(http, lab, withheld, patient_objects_to_sharing=True)
    flows.done(http, lab, withheld, "L1", "L2", "L3")
    passed_on = flows.create(http, prescriber)
    flows.scan(http, lab, passed_on)
    flows.release(http, lab, passed_on)
    flows.scan(http, other_lab, passed_on)
    receiver.wait_for("/other", 1)
    receiver.wait_for("/sgl", 7)
    receiver.wait_for("/lgc", 6)
    time.sleep(0.3)
    assert types_by_code(receiver.at("/lgc")) == {
        withheld: ["prescription.created", "prescription.completed"],
        passed_on: [
            "prescription.created",
            "prescription.taken",
            "prescription.released",
            "prescription.taken",
        ],
    }
    assert types_by_code(receiver.at("/sgl"))[passed_on] == [
        "prescription.taken",
        "prescription.released",
    ]
    assert types_by_code(receiver.at("/other")) == {passed_on: ["prescription.taken"]}


def test_rotation_signs_with_both_secrets_for_the_overlap_then_the_new_one(
    http, session, prescriber, subscribe, receiver, run_dispatcher
):
    old = subscribe(prescriber, receiver.url())
    new = http.post(f"{HOOKS}/{old['id']}/rotate-secret", headers=prescriber.headers).json
    run_dispatcher()
    flows.create(http, prescriber)
    during = receiver.wait_for("/hook", 1)[0]
    assert during.verifies_with(old["secret"]) and during.verifies_with(new["secret"])
    end_overlap(session=session)
    flows.create(http, prescriber)
    after = receiver.wait_for("/hook", 2)[1]
    assert after.verifies_with(new["secret"]) and not after.verifies_with(old["secret"])


@writes
def end_overlap(*, session) -> None:
    session.execute(
        update(WebhookSubscription).values(previous_secret_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()


def test_ping_is_signed_and_logged_in_the_deliveries(
    http, lab, subscribe, receiver, run_dispatcher
):
    created = subscribe(lab, receiver.url())
    run_dispatcher()
    assert http.post(f"{HOOKS}/{created['id']}/test", headers=lab.headers).status_code == 202
    ping = receiver.wait_for("/hook", 1)[0]
    assert ping.verifies_with(created["secret"])
    assert ping.json["type"] == "ping" and ping.json["subscription"] == created["id"]
    log = wait_until(
        lambda: http.get(f"{HOOKS}/{created['id']}/deliveries", headers=lab.headers).json["items"]
    )
    assert log[0]["type"] == "ping" and log[0]["http_status"] == 204 and log[0]["error"] is None


def test_receiver_down_then_up_gets_the_backlog_in_order(
    http, prescriber, lab, subscribe, receiver, run_dispatcher
):
    created = subscribe(lab, receiver.url())
    port = receiver.port
    receiver.stop()
    run_dispatcher()
    codes = [flows.create(http, prescriber) for _ in range(3)]
    for code in codes:
        flows.scan(http, lab, code)
        flows.done(http, lab, code, "L1")
        flows.done(http, lab, code, "L2", "L3")
    wait_until(
        lambda: http.get(f"{HOOKS}/{created['id']}", headers=lab.headers).json["failures"] >= 3,
        what="three failed attempts",
    )
    log = http.get(f"{HOOKS}/{created['id']}/deliveries", headers=lab.headers).json["items"]
    assert log[0]["http_status"] is None and "Refused" in log[0]["error"]
    receivers.start(port, receiver)
    received = receiver.wait_for("/hook", 3 * 5)
    expected = ["prescription.taken"] + ["prescription.line_reported"] * 3
    assert types_by_code(received) == {
        code: [*expected, "prescription.completed"] for code in codes
    }
    ids = [item.json["id"] for item in received]
    for code in codes:
        mine = [i.json["id"] for i in received if i.json["prescription"]["code"] == code]
        assert mine == sorted(mine)
    assert len(ids) == len(set(ids))


def test_suspended_after_the_retry_window_then_resumed_with_the_backlog(
    http, prescriber, lab, subscribe, receiver, run_dispatcher
):
    created = subscribe(prescriber, receiver.url())
    receiver.on("/hook", 500, body=b"database down " * 200)
    run_dispatcher(retry_for=0.3)
    first = flows.create(http, prescriber)
    suspended = wait_until(
        lambda: (
            (body := http.get(f"{HOOKS}/{created['id']}", headers=prescriber.headers).json)[
                "status"
            ]
            == "suspended"
            and body
        ),
        what="suspension",
    )
    assert "HTTP 500" in suspended["status_reason"]
    log = http.get(f"{HOOKS}/{created['id']}/deliveries", headers=prescriber.headers).json
    assert log["items"][0]["http_status"] == 500
    assert len(log["items"][0]["response"]) <= 1024
    flows.scan(http, lab, first)  # queued while suspended
    receiver.on("/hook", 204)
    time.sleep(0.3)
    assert receiver.at("/hook") == []
    resumed = http.post(f"{HOOKS}/{created['id']}/resume", headers=prescriber.headers)
    assert resumed.status_code == 200 and resumed.json["status"] == "active"
    assert resumed.json["backlog"] == 2
    received = receiver.wait_for("/hook", 2)
    assert types_by_code(received) == {first: ["prescription.created", "prescription.taken"]}


def test_410_gone_deletes_the_subscription(http, prescriber, subscribe, receiver, run_dispatcher):
    created = subscribe(prescriber, receiver.url())
    receiver.on("/hook", 410)
    run_dispatcher()
    flows.create(http, prescriber)
    wait_until(
        lambda: http.get(f"{HOOKS}/{created['id']}", headers=prescriber.headers).status_code == 404,
        what="deletion",
    )
    assert http.get(HOOKS, headers=prescriber.headers).json["items"] == []


def test_a_slow_receiver_does_not_delay_a_fast_one(
    http, prescriber, other_prescriber, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url("/slow"))
    subscribe(other_prescriber, receiver.url("/fast"))
    release = threading.Event()
    receiver.on("/slow", hold=release)
    run_dispatcher(workers=6, per_subscription=2)
    try:
        for _ in range(8):
            flows.create(http, prescriber)
            flows.create(http, other_prescriber)
        receiver.wait_for("/fast", 8)  # while every slow delivery is still held
        assert receiver.at("/slow") == []
    finally:
        release.set()
    receiver.wait_for("/slow", 8)


def test_redirects_are_not_followed_and_count_as_failures(
    http, prescriber, subscribe, receiver, run_dispatcher
):
    created = subscribe(prescriber, receiver.url("/moved"))
    receiver.on("/moved", 302, headers={"Location": receiver.url("/elsewhere")})
    run_dispatcher()
    flows.create(http, prescriber)
    wait_until(
        lambda: http.get(f"{HOOKS}/{created['id']}", headers=prescriber.headers).json["failures"],
        what="a failure",
    )
    assert receiver.at("/elsewhere") == []
    assert receiver.refused[0] == "/moved"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_address_connected_to_is_checked_at_each_delivery(
    http, prescriber, subscribe, receiver, run_dispatcher, host
):
    # Accepted while the address rule was lifted (as if the name resolved elsewhere then).
    created = subscribe(prescriber, receiver.url(host=host))
    run_dispatcher(allow_private=False)
    flows.create(http, prescriber)
    log = wait_until(
        lambda: http.get(f"{HOOKS}/{created['id']}/deliveries", headers=prescriber.headers).json[
            "items"
        ],
        what="an attempt",
    )
    assert "127.0.0.1 is a loopback address" in log[0]["error"]
    assert receiver.at("/hook") == [] and receiver.refused == []


def test_redeliver_sends_again_from_an_event(
    http, prescriber, lab, subscribe, receiver, run_dispatcher
):
    created = subscribe(prescriber, receiver.url())
    run_dispatcher()
    code = flows.create(http, prescriber)
    flows.scan(http, lab, code)
    first, second = receiver.wait_for("/hook", 2)
    log = f"{HOOKS}/{created['id']}/deliveries"
    wait_until(lambda: len(http.get(log, headers=prescriber.headers).json["items"]) == 2)
    queued = http.post(
        f"{HOOKS}/{created['id']}/redeliver",
        json={"from_event": second.json["id"]},
        headers=prescriber.headers,
    )
    assert queued.json == {"queued": 1}
    again = receiver.wait_for("/hook", 3)[2]
    assert again.json == second.json and again.headers["webhook-id"] == second.headers["webhook-id"]


def test_ordering_per_prescription_under_concurrent_changes(
    app, http, prescriber, lab, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url())
    run_dispatcher(workers=8, per_subscription=4)
    codes = [flows.create(http, prescriber) for _ in range(8)]
    failures = []

    def work(code):
        client = app.test_client()
        try:
            flows.scan(client, lab, code)
            for line in ("L1", "L2", "L3"):
                flows.done(client, lab, code, line)
        except Exception as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(code,)) for code in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    received = receiver.wait_for("/hook", 8 * 6)
    expected = [
        "prescription.created",
        "prescription.taken",
        *["prescription.line_reported"] * 3,
        "prescription.completed",
    ]
    assert types_by_code(received) == {code: expected for code in codes}


def test_attempts_are_logged_with_a_cursor(
    http, session, prescriber, subscribe, receiver, run_dispatcher
):
    created = subscribe(prescriber, receiver.url())
    run_dispatcher()
    for _ in range(3):
        flows.create(http, prescriber)
    receiver.wait_for("/hook", 3)
    wait_until(lambda: session.query(WebhookAttempt).count() == 3 or session.rollback())
    url = f"{HOOKS}/{created['id']}/deliveries?limit=2"
    page = http.get(url, headers=prescriber.headers).json
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = http.get(f"{url}&cursor={page['next_cursor']}", headers=prescriber.headers).json
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [item["event_id"] for item in page["items"] + rest["items"]]
    assert len(set(ids)) == 3  # each attempt once, across the pages


@pytest.mark.skipif(
    not os.environ.get("EPU_TEST_POSTGRES_URL"),
    reason="sequence gaps need concurrent writers: PostgreSQL",
)
def test_an_event_that_commits_after_later_ids_is_still_delivered(
    app, http, session_factory, prescriber, lab, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url())
    run_dispatcher()
    code = flows.create(http, prescriber)
    receiver.wait_for("/hook", 1)
    slow = session_factory()  # takes an event id, then stays open while others commit
    client = slow.scalar(select(Client).where(Client.client_id == lab.client_id))
    actor = Actor(client.id, client.role, client.identifier, client.name)
    prescription = slow.scalar(
        select(Prescription).where(Prescription.code == code).with_for_update()
    )
    record(slow, prescription, "proposed", actor, {})
    slow.flush()
    held_id = slow.scalar(select(func.max(Event.id)))

    def writer():
        writer_client = app.test_client()
        for _ in range(5):
            flows.create(writer_client, prescriber)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    later = receiver.wait_for("/hook", 21)
    assert min(item.json["id"] for item in later[1:]) > held_id  # delivered past the gap
    slow.commit()
    slow.close()
    arrived = receiver.wait_for("/hook", 22)
    assert held_id in {item.json["id"] for item in arrived}


def test_only_the_dispatcher_commits_without_waiting_for_the_disk(app, settings):
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL setting")
    engine = dispatcher_engine(settings)
    try:
        with engine.connect() as dispatcher, app.extensions["epu.engine"].connect() as service:
            show = "SHOW synchronous_commit"
            assert dispatcher.exec_driver_sql(show).scalar() == "off"
            assert service.exec_driver_sql(show).scalar() == "on"  # a prescription is durable
    finally:
        engine.dispose()


def test_a_receiver_gets_its_share_in_parallel_and_a_failing_one_a_probe_at_a_time(
    http, prescriber, other_prescriber, subscribe, receiver, run_dispatcher
):
    subscribe(prescriber, receiver.url("/healthy"))
    subscribe(other_prescriber, receiver.url("/failing"))
    receiver.on("/healthy", delay=0.3)
    receiver.on("/failing", status=503, delay=0.3)
    run_dispatcher(workers=8, per_subscription=2)
    for _ in range(8):
        flows.create(http, prescriber)
        flows.create(http, other_prescriber)
    receiver.wait_for("/healthy", 8)
    wait_until(lambda: receiver.refused.count("/failing") >= 4, what="four failed attempts")
    assert receiver.most_open["/healthy"] == 2  # the cap, reached and never passed
    # Before its first failure was recorded the failing receiver was healthy for all we knew
    # (up to 2 at once); since, one probe at a time.
    with receiver.lock:
        receiver.most_open["/failing"] = receiver.open["/failing"]
    wait_until(lambda: receiver.refused.count("/failing") >= 8, what="four more failed attempts")
    assert receiver.most_open["/failing"] == 1


def test_an_event_is_written_and_its_subscriptions_read_in_one_statement(
    app, http, session, settings, prescriber, other_prescriber, lab, subscribe, receiver
):
    """On PostgreSQL the outbox's subscriptions come back with the event's INSERT (a round
    trip less on every write); each subscriber still gets its own delivery, others none."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("a CTE around the INSERT: PostgreSQL (SQLite reads them apart)")
    to_prescriber = subscribe(prescriber, receiver.url("/lgc"))
    to_lab = subscribe(lab, receiver.url("/sgl"), events=["prescription.taken"])
    subscribe(other_prescriber, receiver.url("/other"))
    code = flows.create(http, prescriber)
    statements: list[str] = []
    engine = app.extensions["epu.engine"]
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        flows.scan(http, lab, code)
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert [s for s in statements if "webhook_subscriptions" in s] == [
        s for s in statements if "INSERT INTO events" in s
    ]
    assert len([s for s in statements if "INSERT INTO events" in s]) == 1
    queued = session.execute(
        select(WebhookDelivery.subscription_id, WebhookDelivery.kind)
        .join(Prescription, Prescription.id == WebhookDelivery.prescription_id)
        .where(Prescription.code == code, WebhookDelivery.kind == "prescription.taken")
    ).all()
    ids = dict(session.execute(select(WebhookSubscription.public_id, WebhookSubscription.id)).all())
    taken = "prescription.taken"
    assert sorted(queued) == sorted([(ids[to_prescriber["id"]], taken), (ids[to_lab["id"]], taken)])
