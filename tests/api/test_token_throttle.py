"""The token endpoint: wrong secrets pause the client id and the address, exponentially and
never for more than 60 seconds; the right secret is then accepted again."""

import base64

import pytest

import api.limits as limits_module
from epu import clients


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token(http, client_id, secret, address="10.0.0.1"):
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(client_id, secret),
        environ_base={"REMOTE_ADDR": address},
    )


@pytest.fixture
def client(session_factory, http):
    with session_factory() as session:
        created, secret = clients.create_client(
            session=session, role="lab", identifier="130000029", name="Laboratoire"
        )
    return created.client_id, secret


@pytest.fixture
def clock(monkeypatch):
    """Time the limits see, moved by the test (pauses are seconds long)."""
    now = [1_000_000.0]
    monkeypatch.setattr(limits_module.time, "time", lambda: now[0])
    return now


def test_wrong_secrets_are_paused_exponentially_then_the_right_one_works(http, client, clock):
    client_id, secret = client
    for _ in range(5):
        assert token(http, client_id, "wrong").status_code == 401  # the free attempts
    assert token(http, client_id, "wrong").status_code == 401  # the 6th starts a pause of 1 s
    paused = token(http, client_id, secret)
    assert paused.status_code == 429 and paused.headers["Retry-After"] == "1"
    clock[0] += 1.1
    assert token(http, client_id, "wrong").status_code == 401  # 7th: 2 s
    assert token(http, client_id, "wrong").headers["Retry-After"] == "2"
    retry_afters = []
    for _ in range(10):
        clock[0] += 61
        token(http, client_id, "wrong")
        retry_afters.append(int(token(http, client_id, "wrong").headers["Retry-After"]))
    assert max(retry_afters) == 60  # capped: a pause, never a lockout
    clock[0] += 61
    assert token(http, client_id, secret).status_code == 200
    assert token(http, client_id, "wrong").status_code == 401  # success forgot the failures


def test_one_address_guessing_many_client_ids_is_paused(http, clock):
    statuses = [token(http, f"guess-{n}", "wrong", "10.0.0.9").status_code for n in range(22)]
    assert statuses[:21] == [401] * 21
    assert statuses[21] == 429
    assert token(http, "another", "wrong", "10.0.0.10").status_code == 401  # other addresses


def test_a_pause_of_a_client_id_does_not_stop_other_clients(http, client, session_factory, clock):
    client_id, secret = client
    for _ in range(7):
        token(http, "attacked-id", "wrong", "10.0.0.2")
    assert token(http, "attacked-id", "wrong", "10.0.0.3").status_code == 429
    assert token(http, client_id, secret, "10.0.0.4").status_code == 200
