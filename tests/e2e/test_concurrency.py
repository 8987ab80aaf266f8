"""Races decided by the database, never by a process-local lock: real gunicorn processes, real
threads released together by a barrier, on SQLite (one file shared by the instances) and on
PostgreSQL. SQLite may make a request wait, or at worst answer 503 with Retry-After, but never
500; and the outcome of each race must be exact."""

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests
from sqlalchemy import func, select

from models import Prescription
from tests.e2e.support import problem_code
from tests.factories import BLOOD_COUNT, prescription_body

pytestmark = pytest.mark.slow

RACERS = 20
CANCEL_RACES = 10
ADD_BLOOD_COUNT = {
    "changes": [{"op": "add", "line": {"loinc": BLOOD_COUNT}, "reason": "r"}],
    "mode": "urgent",
}
PROPOSAL_RACES = 10


def with_luhn_key(digits: str) -> str:
    """digits followed by the Luhn check digit that makes the whole number valid."""
    for key in "0123456789":
        total = 0
        for position, char in enumerate(reversed(digits + key)):
            value = int(char) * (2 if position % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return digits + key
    raise AssertionError("unreachable: one key always fits")


def finess_numbers(count: int) -> list[str]:
    return [with_luhn_key(f"{13_000_100 + i:08d}") for i in range(count)]


def race(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run every call in its own thread, all released at the same moment by a barrier."""
    barrier = Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=120) for future in futures]


def outcomes(responses: list[requests.Response]) -> Counter:
    """(status, problem code) -> how many, e.g. {(200, None): 1, (409, "held_by_..."): 19}."""
    return Counter((r.status_code, problem_code(r)) for r in responses)


def assert_no_server_error(responses: list[requests.Response]) -> None:
    """No 500 at all; the only 5xx allowed is 503 with Retry-After (a busy database)."""
    errors = [r for r in responses if r.status_code >= 500]
    assert [r for r in errors if r.status_code == 500] == [], [r.text for r in errors]
    assert all(r.status_code == 503 and r.headers.get("Retry-After") for r in errors), [
        (r.status_code, r.headers, r.text) for r in errors
    ]


def report(name: str, counts: Counter) -> None:
    print(f"\n[race] {name}: {dict(sorted(counts.items(), key=str))}")


@pytest.fixture(params=["one instance", "two instances"])
def instances(request, server):
    """The servers the racing requests are spread over (in turn)."""
    if request.param == "one instance":
        return [server]
    return [server, request.getfixturevalue("server_b")]


def scan(server, party, code: str) -> requests.Response:
    return server.post("/api/v1/scans", json={"code": code}, headers=party.headers)


def history_types(server, party, code: str) -> list[str]:
    response = server.get(f"/api/v1/prescriptions/{code}/history", headers=party.headers)
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["items"]]


def test_twenty_laboratories_scanning_one_code_only_one_takes_it(
    instances, register, create_prescription
):
    server = instances[0]
    prescriber = register(server, "prescriber")
    labs = [register(server, "lab", finess) for finess in finess_numbers(RACERS)]
    code = create_prescription(server, prescriber)["code"]

    responses = race(
        [
            lambda lab=lab, i=i: scan(instances[i % len(instances)], lab, code)
            for i, lab in enumerate(labs)
        ]
    )

    counts = outcomes(responses)
    report(f"20 labs scan, {len(instances)} instance(s)", counts)
    assert_no_server_error(responses)
    assert counts == {(200, None): 1, (409, "held_by_another_laboratory"): RACERS - 1}
    winner = labs[[r.status_code for r in responses].index(200)]
    status = server.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert status.json()["status"] == "in_progress"
    assert status.json()["laboratory"]["finess"] == winner.identifier
    assert history_types(server, prescriber, code).count("taken") == 1


def test_twenty_patches_with_one_etag_only_one_applies(instances, register, create_prescription):
    server = instances[0]
    prescriber, lab = register(server, "prescriber"), register(server, "lab")
    code = create_prescription(server, prescriber)["code"]
    taken = scan(server, lab, code)
    assert taken.status_code == 200, taken.text
    etag, version, lines = taken.headers["ETag"], taken.json()["version"], taken.json()["lines"]

    responses = race(
        [
            lambda i=i: instances[i % len(instances)].patch(
                f"/api/v1/prescriptions/{code}",
                json=ADD_BLOOD_COUNT,
                headers={**lab.headers, "If-Match": etag},
            )
            for i in range(RACERS)
        ]
    )

    counts = outcomes(responses)
    report(f"20 PATCH same ETag, {len(instances)} instance(s)", counts)
    assert_no_server_error(responses)
    assert counts == {(200, None): 1, (412, "stale_version"): RACERS - 1}
    after = server.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).json()
    added = [line for line in after["lines"] if line["origin"] == "laboratory"]
    assert len(after["lines"]) == len(lines) + 1
    assert [line["loinc"] for line in added] == [BLOOD_COUNT]
    assert after["version"] == version + 1
    assert history_types(server, lab, code).count("modified") == 1


def test_cancel_racing_a_scan_exactly_one_wins(instances, register, create_prescription):
    """The loser of a cancel gets 409 not_cancellable; the loser of a scan gets 410 cancelled,
    which is what a scan of a cancelled prescription answers (a judgement call: the issue says
    "the loser gets 409", the scan rules say 410 for a cancelled prescription)."""
    server, other = instances[0], instances[-1]
    prescriber, lab = register(server, "prescriber"), register(server, "lab")
    winners: Counter = Counter()
    all_responses = []
    for _ in range(CANCEL_RACES):
        code = create_prescription(server, prescriber)["code"]
        cancelled, scanned = race(
            [
                lambda code=code: server.post(
                    f"/api/v1/prescriptions/{code}/cancel",
                    json={"reason": "x"},
                    headers=prescriber.headers,
                ),
                lambda code=code: scan(other, lab, code),
            ]
        )
        all_responses += [cancelled, scanned]
        assert_no_server_error([cancelled, scanned])
        pair = (
            (cancelled.status_code, problem_code(cancelled)),
            (scanned.status_code, problem_code(scanned)),
        )
        assert pair in {
            ((200, None), (410, "cancelled")),  # the cancel won
            ((409, "not_cancellable"), (200, None)),  # the scan won
        }, pair
        winners["cancel" if cancelled.status_code == 200 else "scan"] += 1
        final = server.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
        assert final.json()["status"] == (
            "cancelled" if cancelled.status_code == 200 else "in_progress"
        )
    report(f"cancel vs scan x{CANCEL_RACES}, {len(instances)} instance(s)", winners)
    report("  responses", outcomes(all_responses))
    assert sum(winners.values()) == CANCEL_RACES


def test_concurrent_retries_with_one_idempotency_key_create_one_prescription(
    instances, register, session_factory
):
    server = instances[0]
    prescriber = register(server, "prescriber")
    headers = {**prescriber.headers, "Idempotency-Key": "retry-1"}

    responses = race(
        [
            lambda i=i: instances[i % len(instances)].post(
                "/api/v1/prescriptions", json=prescription_body(), headers=headers
            )
            for i in range(RACERS)
        ]
    )

    counts = outcomes(responses)
    report(f"20 POST same Idempotency-Key, {len(instances)} instance(s)", counts)
    assert_no_server_error(responses)
    assert counts == {(201, None): RACERS}
    assert len({r.json()["code"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == RACERS - 1
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Prescription)) == 1


def test_accept_racing_a_withdraw_exactly_one_wins(instances, register, create_prescription):
    """The prescriber accepts while the laboratory withdraws the same proposal: one of them
    wins, the other is told the proposal's status (409 proposal_not_pending), and the lines
    are changed only when the accept won."""
    server, other = instances[0], instances[-1]
    prescriber, lab = register(server, "prescriber"), register(server, "lab")
    winners: Counter = Counter()
    for _ in range(PROPOSAL_RACES):
        code = create_prescription(server, prescriber)["code"]
        taken = scan(server, lab, code)
        proposed = server.patch(
            f"/api/v1/prescriptions/{code}",
            json={"changes": [{"op": "remove", "line_id": "L3", "reason": "non réalisable"}]},
            headers={**lab.headers, "If-Match": taken.headers["ETag"]},
        )
        assert proposed.status_code == 202, proposed.text
        base = f"/api/v1/prescriptions/{code}/proposals/P1"
        accepted, withdrawn = race(
            [
                lambda: server.post(f"{base}/accept", json={}, headers=prescriber.headers),
                lambda: other.post(f"{base}/withdraw", headers=lab.headers),
            ]
        )
        assert_no_server_error([accepted, withdrawn])
        pair = (
            (accepted.status_code, problem_code(accepted)),
            (withdrawn.status_code, problem_code(withdrawn)),
        )
        assert pair in {
            ((200, None), (409, "proposal_not_pending")),
            ((409, "proposal_not_pending"), (200, None)),
        }, pair
        loser = withdrawn if accepted.status_code == 200 else accepted
        expected = "accepted" if accepted.status_code == 200 else "withdrawn"
        assert loser.json()["status"] == expected
        after = server.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).json()
        assert after["proposals"][0]["status"] == expected
        l3 = next(line for line in after["lines"] if line["id"] == "L3")
        assert l3["status"] == ("removed" if expected == "accepted" else "requested")
        types = history_types(server, lab, code)
        assert types.count("proposal_accepted") + types.count("proposal_withdrawn") == 1
        winners[expected] += 1
    report(f"accept vs withdraw x{PROPOSAL_RACES}, {len(instances)} instance(s)", winners)
    assert sum(winners.values()) == PROPOSAL_RACES
