"""Dead dependencies, through a TCP proxy the test controls: Redis dropping every packet."""

import time

import pytest
import requests

from epu.codes import check_character
from tests.e2e.proxy import Proxy
from tests.e2e.support import REDIS_DB, ServerPool

DEADLINE = 10  # generous: what is asserted is that requests end, not how fast


@pytest.fixture
def redis_proxy():
    import redis

    try:
        redis.Redis(port=6379, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    proxy = Proxy("127.0.0.1", 6379)
    yield proxy
    proxy.close()


def until(check, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout}s")


def test_redis_dropping_packets_degrades_limits_and_recovers(start_server, register, redis_proxy):
    server = start_server(
        "a", workers=1, env={"EPU_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}"}
    )
    prescriber = register(server, "prescriber")
    assert server.get("/readyz").json()["limits"] == "shared"

    redis_proxy.drop()
    for _ in range(5):
        response = server.get("/api/v1/prescriptions", headers=prescriber.headers, timeout=DEADLINE)
        assert response.status_code == 200, response.text
    ready = server.get("/readyz", timeout=DEADLINE)
    assert ready.status_code == 200
    assert ready.json()["limits"] == "degraded"
    assert server.log_tail(200).count("Redis unreachable") == 1  # once a minute, not per request

    redis_proxy.restore()
    until(lambda: server.get("/readyz").json()["limits"] == "shared")
    response = server.get("/api/v1/prescriptions", headers=prescriber.headers)
    assert response.status_code == 200


def test_without_redis_the_workers_of_one_instance_share_the_failed_scan_limit(
    start_server, register
):
    server = start_server("a", workers=2, env={"EPU_FAILED_SCAN_LIMIT": "5"})
    lab = register(server, "lab")
    unknown = "01S2TBPZ2JCNZZYGH" + check_character("01S2TBPZ2JCNZZYGH")  # never issued
    statuses = []
    with requests.Session() as http:
        for _ in range(12):
            # a new connection each time, so both workers take their share
            statuses.append(
                http.post(
                    server.url + "/api/v1/scans",
                    json={"code": unknown},
                    headers={**lab.headers, "Connection": "close"},
                    timeout=DEADLINE,
                ).status_code
            )
    assert statuses.count(404) == 5
    assert statuses[5:] == [429] * 7
    assert server.get("/readyz").json()["limits"] == "instance"


@pytest.fixture
def postgres_proxy(settings):
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("the partition is simulated between EPU and PostgreSQL")
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def test_postgresql_dropping_packets_gives_503_then_recovers(
    settings, register, postgres_proxy, tmp_path
):
    proxy, url = postgres_proxy
    pool = ServerPool(url, settings.secret_key, tmp_path / "servers")
    try:
        server = pool.start("a", workers=1)
        exercise_a_partition(server, register(server, "prescriber"), proxy)
    finally:
        pool.stop_all()


def exercise_a_partition(server, prescriber, proxy) -> None:
    assert server.get("/api/v1/prescriptions", headers=prescriber.headers).status_code == 200

    proxy.drop()
    assert server.get("/healthz", timeout=DEADLINE).status_code == 200  # never the database
    ready = server.get("/readyz", timeout=DEADLINE)
    assert ready.status_code == 503
    refused = server.get("/api/v1/prescriptions", headers=prescriber.headers, timeout=DEADLINE)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    assert refused.json()["code"] == "unavailable"

    proxy.restore()
    until(lambda: server.get("/readyz", timeout=DEADLINE).status_code == 200)
    until(
        lambda: (
            server.get(
                "/api/v1/prescriptions", headers=prescriber.headers, timeout=DEADLINE
            ).status_code
            == 200
        )
    )
