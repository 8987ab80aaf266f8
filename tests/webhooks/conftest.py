"""Webhook fixtures: a real receiver on loopback, dispatchers running in threads, and the
app allowed to call loopback over plain http (EPU_WEBHOOK_ALLOW_HTTP/ALLOW_PRIVATE)."""

import dataclasses
import threading

import pytest

from epu.settings import WebhookSettings
from epu.webhooks.dispatcher import Dispatcher
from tests.webhooks import receiver as receivers

LOOPBACK = WebhookSettings(
    allow_http=True,
    allow_private=True,
    timeout=5.0,
    retry_base=0.05,
    retry_cap=0.2,
    poll=0.02,
    lease=20.0,
)


@pytest.fixture
def receiver():
    running = receivers.start()
    yield running
    running.stop()


@pytest.fixture
def hooks(app, settings, monkeypatch):
    """The app's settings with loopback webhooks allowed; returns a way to change them."""

    def configure(**changes) -> WebhookSettings:
        webhooks = dataclasses.replace(LOOPBACK, **changes)
        monkeypatch.setitem(
            app.extensions, "epu.settings", dataclasses.replace(settings, webhooks=webhooks)
        )
        return webhooks

    configure()
    return configure


@pytest.fixture
def run_dispatcher(settings, session_factory, http):
    """run_dispatcher(**webhook_settings) -> a Dispatcher running in a thread until the test
    ends (or until .halt())."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(**changes) -> Dispatcher:
        webhooks = dataclasses.replace(LOOPBACK, **changes)
        dispatcher = Dispatcher(
            session_factory,
            dataclasses.replace(settings, webhooks=webhooks),
            owner=f"test-{len(running)}",
        )
        stop = threading.Event()
        thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))

        def halt() -> None:
            stop.set()
            thread.join(30)

        dispatcher.halt = halt
        return dispatcher

    yield start
    for stop, thread in running:
        stop.set()
    for _stop, thread in running:
        thread.join(30)


@pytest.fixture
def subscribe(http, hooks):
    """subscribe(party, url, events=["*"]) -> the 201 body (with its secret)."""

    def create(party, url: str, events=("*",), **extra) -> dict:
        response = http.post(
            "/api/v1/subscriptions",
            json={"url": url, "events": list(events), **extra},
            headers=party.headers,
        )
        assert response.status_code == 201, response.json
        return response.json

    return create
