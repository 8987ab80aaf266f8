"""`epu dispatch` as real processes: killed with SIGKILL mid-delivery, and two of them
sharing the work, against a real receiver on loopback."""

import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from models import WebhookDelivery
from tests.e2e.support import EPU, REPO
from tests.webhooks import flows

pytestmark = pytest.mark.slow


@pytest.fixture
def dispatchers(settings, tmp_path):
    """start() -> a running `epu dispatch` process on the test database (stopped at the end)."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EPU_")}
        environment.update(
            EPU_DATABASE_URL=settings.database_url,
            EPU_SECRET_KEY=settings.secret_key,
            EPU_INSTANCE_DIR=str(tmp_path / "instance"),
            EPU_WEBHOOK_ALLOW_HTTP="1",
            EPU_WEBHOOK_ALLOW_PRIVATE="1",
            EPU_WEBHOOK_RETRY_BASE="0.1",
            EPU_WEBHOOK_RETRY_CAP="0.5",
            EPU_DISPATCH_POLL="0.05",
            **env,
        )
        log = (tmp_path / f"dispatch-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [str(EPU), "dispatch"], cwd=REPO, env=environment, stdout=log, stderr=log
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_until(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached after {timeout}s")


def committed_deliveries(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(WebhookDelivery))


def test_sigkill_mid_delivery_loses_nothing(
    http, prescriber, lab, subscribe, receiver, dispatchers, session_factory
):
    subscribe(prescriber, receiver.url())
    subscribe(lab, receiver.url("/sgl"))
    hold = threading.Event()
    receiver.on("/hook", hold=hold)
    first = dispatchers(EPU_DISPATCH_LEASE="2")
    codes = [flows.create(http, prescriber) for _ in range(6)]
    for code in codes[:3]:
        flows.scan(http, lab, code)
    wait_until(lambda: len(receiver.arrivals) >= 3, what="deliveries in flight")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    hold.set()  # the receiver answers the requests of a dispatcher that is gone
    for code in codes[3:]:
        flows.scan(http, lab, code)  # committed while no dispatcher runs
    dispatchers(EPU_DISPATCH_LEASE="2")
    expected = committed_deliveries(session_factory)
    assert expected == 6 + 6 + 6  # created and taken to the prescriber, taken to the lab
    wait_until(lambda: outbox_drained(session_factory), what="outbox drained")
    delivered = {(item.path, item.headers["webhook-id"]) for item in receiver.received}
    assert len(delivered) == expected  # every committed event at least once


def outbox_drained(session_factory) -> bool:
    with session_factory() as session:
        return not session.scalar(select(func.count()).where(WebhookDelivery.status == "pending"))


def test_two_dispatchers_share_the_work_without_sending_twice(
    http, prescriber, other_prescriber, lab, subscribe, receiver, dispatchers, session_factory
):
    for party, path in ((prescriber, "/a"), (other_prescriber, "/b"), (lab, "/c")):
        subscribe(party, receiver.url(path))
    dispatchers()
    dispatchers()
    for _ in range(15):
        for party in (prescriber, other_prescriber):
            code = flows.create(http, party)
            flows.scan(http, lab, code)
    expected = committed_deliveries(session_factory)
    assert expected == 30 * 2 + 30
    wait_until(lambda: len(receiver.received) >= expected, what="every delivery")
    time.sleep(0.5)  # a duplicate, if any, has time to arrive
    sent = Counter((item.path, item.headers["webhook-id"]) for item in receiver.received)
    assert len(sent) == expected
    assert [key for key, count in sent.items() if count > 1] == []
