"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when EPU_TEST_POSTGRES_URL is
set), the app, and ready-to-use prescriber and laboratory clients with tokens."""

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text

from epu import catalogue, clients
from epu.settings import Settings
from migrations import upgrade
from models import (
    Client,
    Event,
    IdempotencyRecord,
    Line,
    NurseRead,
    Prescription,
    Proposal,
    Sampling,
)
from models.db import make_engine, make_session_factory

SHARED = Path(__file__).resolve().parents[2] / "shared"
POSTGRES_SERVER = os.environ.get("EPU_TEST_POSTGRES_URL")


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared data lives beside the project)")
    return path


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    if not POSTGRES_SERVER:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'epu.db'}"
        return
    name = f"epu_test_{secrets.token_hex(4)}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{POSTGRES_SERVER}/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    upgrade(database_url)
    # Repeated reads counted in their event at once: tests read the trail right after; the
    # deferred counting has its own test (tests/api/test_history_hardening.py).
    return Settings(
        database_url=database_url,
        secret_key="test-" + secrets.token_hex(16),
        read_count_flush_seconds=0,
    )


@pytest.fixture(scope="session")
def engine(settings):
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine):
    factory = make_session_factory(engine)
    with factory() as session:
        catalogue.load_bundled_if_empty(session=session)
    return factory


@pytest.fixture
def session(session_factory, clean_database):
    with session_factory() as session:
        yield session


@pytest.fixture
def clean_database(session_factory):
    """Each test starts with no clients and no prescriptions (the catalogue stays)."""
    yield
    with session_factory() as session:
        models = (IdempotencyRecord, Event, Proposal, NurseRead, Sampling, Line, Prescription)
        for model in (*models, Client):
            session.execute(delete(model))
        session.commit()


@pytest.fixture(scope="session")
def app(settings, session_factory):
    from api import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def http(app, clean_database):
    from api.limits import Limits

    app.extensions["epu.limits"] = Limits(app.extensions["epu.settings"])
    return app.test_client()


@dataclass
class Party:
    """A registered client software with a bearer token, for API tests."""

    client_id: str
    secret: str
    identifier: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(http, session_factory, role: str, identifier: str, name: str) -> Party:
    with session_factory() as session:
        client, secret = clients.create_client(
            session=session, role=role, identifier=identifier, name=name
        )
    basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.json
    return Party(client.client_id, secret, identifier, response.json["access_token"])


@pytest.fixture
def prescriber(http, session_factory) -> Party:
    return register(http, session_factory, "prescriber", "10005688790", "Dr Amélie Thomas")


@pytest.fixture
def other_prescriber(http, session_factory) -> Party:
    return register(http, session_factory, "prescriber", "10003092342", "Dr Paul Martin")


@pytest.fixture
def lab(http, session_factory) -> Party:
    return register(http, session_factory, "lab", "130000029", "Laboratoire des Calanques")


@pytest.fixture
def other_lab(http, session_factory) -> Party:
    return register(http, session_factory, "lab", "750000010", "Laboratoire du Marais")


@pytest.fixture
def nurse(http, session_factory) -> Party:
    return register(http, session_factory, "nurse", "10101016318", "Claire Dubois IDEL")


@pytest.fixture
def other_nurse(http, session_factory) -> Party:
    return register(http, session_factory, "nurse", "10101016326", "Marc Leroy IDEL")
