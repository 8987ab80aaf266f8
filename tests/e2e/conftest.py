"""Real servers for the end-to-end tests: gunicorn processes on the test database, real HTTP.

`server` and `server_b` are two instances started once per run on the session's database
(SQLite file or PostgreSQL database of tests/conftest.py) and shared by the tests; a test that
needs other settings (Redis, a failed scan limit, one worker...) starts its own with
`start_server`, stopped when the test ends. Every instance gets the session's secret key, so a
token issued by one is accepted by the others and by the in-process fixtures.
"""

import pytest

from epu import clients
from tests.e2e.support import LAB_FINESS, PRESCRIBER_RPPS, Party, Server, ServerPool, token_for
from tests.factories import prescription_body


@pytest.fixture(scope="session")
def shared_servers(settings, session_factory, tmp_path_factory):
    pool = ServerPool(settings.database_url, settings.secret_key, tmp_path_factory.mktemp("srv"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def server(shared_servers) -> Server:
    """Instance A, shared by the whole run."""
    return shared_servers.start("a")


@pytest.fixture(scope="session")
def server_b(shared_servers, server) -> Server:
    """Instance B: another gunicorn on the same database as A."""
    return shared_servers.start("b")


@pytest.fixture
def start_server(settings, session_factory, tmp_path):
    """Factory of instances for this test only: start_server("a", redis=True, env={...})."""
    pool = ServerPool(settings.database_url, settings.secret_key, tmp_path / "servers")
    yield pool.start
    pool.stop_all()


@pytest.fixture
def register(session_factory, clean_database):
    """register(server, "lab", "130000029") -> Party, created in the database, token via HTTP."""

    def register(
        server: Server, role: str, identifier: str | None = None, name: str | None = None
    ) -> Party:
        identifier = identifier or (PRESCRIBER_RPPS if role == "prescriber" else LAB_FINESS)
        name = name or ("Dr Amélie Thomas" if role == "prescriber" else f"Laboratoire {identifier}")
        with session_factory() as session:
            client, secret = clients.create_client(
                session=session, role=role, identifier=identifier, name=name
            )
        token = token_for(server, client.client_id, secret)
        return Party(role, client.client_id, secret, identifier, token)

    return register


@pytest.fixture
def create_prescription():
    """create_prescription(server, prescriber, **body_overrides) -> the 201 response's body."""

    def create(server: Server, prescriber: Party, headers=None, **overrides) -> dict:
        response = server.post(
            "/api/v1/prescriptions",
            json=prescription_body(**overrides),
            headers={**prescriber.headers, **(headers or {})},
        )
        assert response.status_code == 201, response.text
        return response.json()

    return create
