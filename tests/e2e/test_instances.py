"""Several gunicorn instances on one database: shared secret, shared data, limits shared through
Redis (and per process without it), and a worker killed under load."""

import os
import signal
import threading
import time

import pytest
import requests

from epu.codes import generate_code
from tests.e2e.support import problem_code
from tests.factories import prescription_body

pytestmark = pytest.mark.slow

FAILED_SCAN_LIMIT = 3
LIMITED = {"EPU_FAILED_SCAN_LIMIT": str(FAILED_SCAN_LIMIT)}


def scan(server, party, code: str) -> requests.Response:
    return server.post("/api/v1/scans", json={"code": code}, headers=party.headers)


def assert_unknown(response: requests.Response) -> None:
    assert (response.status_code, problem_code(response)) == (404, "not_found"), response.text


def assert_scanning_paused(response: requests.Response) -> None:
    assert (response.status_code, problem_code(response)) == (429, "too_many_requests"), (
        response.text
    )
    assert 1 <= int(response.headers["Retry-After"]) <= 600


def test_token_from_one_instance_works_on_the_other(server, server_b, register):
    lab = register(server, "lab")

    response = server_b.get("/api/v1/catalogue/2842-3", headers=lab.headers)

    assert response.status_code == 200, response.text
    assert server.get("/.well-known/jwks.json").json() == (
        server_b.get("/.well-known/jwks.json").json()
    )


def test_prescription_created_on_one_instance_is_scanned_on_the_other(
    server, server_b, register, create_prescription
):
    prescriber, lab = register(server, "prescriber"), register(server_b, "lab")
    code = create_prescription(server, prescriber)["code"]

    taken = scan(server_b, lab, code)

    assert taken.status_code == 200, taken.text
    status = server.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert status.json()["status"] == "in_progress"
    assert status.json()["laboratory"]["finess"] == lab.identifier


def test_failed_scan_limit_is_shared_between_instances_through_redis(start_server, register):
    a = start_server("a", redis=True, env=LIMITED)
    b = start_server("b", redis=True, env=LIMITED)
    lab = register(a, "lab")

    for server in (a, b, a):
        assert_unknown(scan(server, lab, generate_code()))

    assert_scanning_paused(scan(b, lab, generate_code()))
    assert_scanning_paused(scan(a, lab, generate_code()))


def test_without_redis_each_process_counts_failed_scans_on_its_own(start_server, register):
    """Documents the in-memory default: the limit is per process, so N processes allow up to
    N times the limit (one worker each here, so the counts are deterministic)."""
    a = start_server("a", workers=1, env=LIMITED)
    b = start_server("b", workers=1, env=LIMITED)
    lab = register(a, "lab")

    for server in (a, b, a):
        assert_unknown(scan(server, lab, generate_code()))
    assert_unknown(scan(a, lab, generate_code()))  # a's third
    assert_unknown(scan(b, lab, generate_code()))  # b's second

    assert_scanning_paused(scan(a, lab, generate_code()))
    assert_unknown(scan(b, lab, generate_code()))  # b's third
    assert_scanning_paused(scan(b, lab, generate_code()))


def create_in_a_loop(server, prescriber, body, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        try:
            response = server.post(
                "/api/v1/prescriptions", json=body, headers=prescriber.headers, timeout=10
            )
        except requests.RequestException as error:  # in flight in the killed worker
            results.append(error)
            continue
        results.append(response)


def wait_for_replacement(server, killed: int, workers: int, timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == workers and killed not in pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"worker {killed} not replaced: {server.worker_pids()}")


def created_codes(results: list) -> list[str]:
    return [
        r.json()["code"]
        for r in list(results)
        if isinstance(r, requests.Response) and r.status_code == 201
    ]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_killing_a_worker_under_load_loses_no_created_prescription(start_server, register):
    server = start_server("victim", workers=2)
    prescriber = register(server, "prescriber")
    workers = server.worker_pids()
    assert len(workers) == 2
    stop, results = threading.Event(), []
    loader = threading.Thread(
        target=create_in_a_loop, args=(server, prescriber, prescription_body(), stop, results)
    )

    loader.start()
    try:
        wait_until(lambda: len(created_codes(results)) >= 5, 15, "the load to start")
        time.sleep(0.5)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        created_before_kill = len(created_codes(results))
        time.sleep(2.5)
    finally:
        stop.set()
        loader.join(timeout=30)

    responses = [r for r in results if isinstance(r, requests.Response)]
    created = created_codes(results)
    print(
        f"\n[kill] {len(created)} created ({created_before_kill} before the kill), "
        f"{len(results) - len(responses)} connection errors, "
        f"other statuses {sorted(r.status_code for r in responses if r.status_code != 201)}"
    )
    assert all(r.status_code in (201, 503) for r in responses), [r.text for r in responses]
    assert len(created) > created_before_kill, "the server stopped answering after the kill"
    wait_for_replacement(server, killed, workers=2)
    assert server.get("/healthz").status_code == 200
    for code in created:
        read = server.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
        assert read.status_code == 200, (code, read.text)
