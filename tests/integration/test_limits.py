"""Shared limits: in memory by default, in Redis when EPU_REDIS_URL is set."""

import multiprocessing
import os
import secrets
import time
from pathlib import Path

import pytest

from api.limits import FileWindows, Limits
from epu.actors import Actor
from epu.settings import Settings

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('EPU_TEST_REDIS_DB', '14')}"


@pytest.fixture
def redis_url():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail("Redis is unreachable at 127.0.0.1:6379 in CI")
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    return REDIS_URL


def limits_with(redis_url: str | None, limit: int = 3) -> Limits:
    return Limits(
        Settings(
            database_url="sqlite://",
            secret_key="s",
            failed_scan_limit=limit,
            redis_url=redis_url,
            rate_limit="5/minute",
        )
    )


def lab() -> Actor:
    return Actor(secrets.randbelow(10**9), "lab", "130000029", "Laboratoire")


@pytest.mark.parametrize("shared", [False, True])
def test_failed_scans_pause_after_the_limit(shared, request):
    url = request.getfixturevalue("redis_url") if shared else None
    limits, actor = limits_with(url), lab()
    limits.check_scans_allowed(actor)
    assert [limits.count_failed_scan(actor) for _ in range(3)] == [False, False, True]
    with pytest.raises(Exception) as refused:
        limits.check_scans_allowed(actor)
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) > 0


def test_two_instances_share_counts_through_redis(redis_url):
    first, second, actor = limits_with(redis_url), limits_with(redis_url), lab()
    first.count_failed_scan(actor)
    second.count_failed_scan(actor)
    assert first.count_failed_scan(actor) is True
    with pytest.raises(Exception):
        second.check_scans_allowed(actor)


def test_in_memory_limits_are_per_process():
    first, second, actor = limits_with(None), limits_with(None), lab()
    for _ in range(3):
        first.count_failed_scan(actor)
    second.check_scans_allowed(actor)


def start_of_a_window(seconds: int) -> None:
    """Sleeps into the next fixed window when this one ends within 10 s: a test of the general
    limit must run within one window."""
    left = seconds - time.time() % seconds
    if left < 10:
        time.sleep(left + 0.1)


def test_general_request_limit(redis_url):
    limits, actor = limits_with(redis_url), lab()
    start_of_a_window(60)
    for _ in range(5):
        limits.count_request(actor)
    with pytest.raises(Exception) as refused:
        limits.count_request(actor)
    assert refused.value.status == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60


def _increments(url: str) -> int:
    """INCR and INCRBY calls Redis served so far (the suite runs one test at a time)."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("incr", "incrby"))


def test_the_request_limit_holds_across_instances_counted_a_lease_at_a_time(redis_url):
    """Each process leases up to a hundredth of the limit (here 4) from Redis: never more than
    the limit in all, at most 3 left unused per process (and still its own), a busy client's
    requests cost Redis a round trip per lease instead of one each, and a full window none."""
    from concurrent.futures import ThreadPoolExecutor

    def with_limit() -> Limits:
        return Limits(Settings(database_url="sqlite://", secret_key="s", redis_url=redis_url,
                               rate_limit="400/hour"))  # fmt: skip

    instances, actor = [with_limit() for _ in range(3)], lab()
    start_of_a_window(3600)

    def request(index: int) -> bool:
        try:
            instances[index % 3].count_request(actor)
        except Exception:  # noqa: BLE001 - a 429: refused
            return False
        return True

    def requests(count: int) -> int:
        with ThreadPoolExecutor(12) as pool:
            return sum(pool.map(request, range(count)))

    calls_before = _increments(redis_url)
    assert requests(300) == 300
    assert _increments(redis_url) - calls_before < 300 / 2
    allowed = 300 + requests(300)
    assert 400 - 3 * 3 <= allowed <= 400
    for instance in range(3):  # what each process still holds is its own to spend
        allowed += sum(request(instance) for _ in range(4))
    assert allowed == 400
    calls_when_full = _increments(redis_url)
    assert requests(30) == 0
    assert _increments(redis_url) == calls_when_full  # refused without asking Redis again


def concurrent_failed_scans(instances: list[Limits], actor: Actor, attempts: int) -> int:
    """Failed scans let through when `attempts` scans of unknown codes race on these instances."""
    from concurrent.futures import ThreadPoolExecutor

    def scan(index: int) -> bool:
        try:
            instances[index % len(instances)].count_failed_scan(actor)
        except Exception:  # noqa: BLE001 - a 429: refused
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(scan, range(attempts)))


def test_concurrent_failed_scans_never_overshoot_the_limit_in_redis(redis_url):
    instances = [limits_with(redis_url, limit=20) for _ in range(3)]
    assert concurrent_failed_scans(instances, lab(), 80) == 20


def test_the_workers_of_one_instance_share_a_file_without_redis(tmp_path):
    def with_file() -> Limits:
        return Limits(
            Settings(
                database_url="sqlite://",
                secret_key="s",
                failed_scan_limit=20,
                limits_path=str(tmp_path / "limits.db"),
            )
        )

    assert concurrent_failed_scans([with_file(), with_file()], lab(), 60) == 20


def _open_file_windows(path: str, start) -> None:
    start.wait()
    FileWindows(Path(path))


def test_workers_booting_at_once_all_open_the_shared_file(tmp_path):
    """gunicorn forks its workers together: none may fail to open the limits' file."""
    context = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = str(tmp_path / f"limits-{attempt}.db")
        start = context.Barrier(6)
        workers = [context.Process(target=_open_file_windows, args=(path, start)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert [worker.exitcode for worker in workers] == [0] * 6


def test_a_scan_that_finds_its_code_gives_its_slot_back():
    limits, actor = limits_with(None, limit=2), lab()
    for _ in range(5):
        with limits.failed_scan_slot(actor):
            pass  # found: not kept
    assert limits.count_failed_scan(actor) is False


def test_unreachable_redis_degrades_to_per_process_counting_without_error(caplog):
    limits, actor = limits_with("redis://127.0.0.1:1/0", limit=3), lab()
    for _ in range(5):
        limits.count_request(actor)  # 5/minute: all allowed, counted in memory
    with pytest.raises(Exception) as refused:
        limits.count_request(actor)
    assert refused.value.status == 429
    assert limits.state == "degraded"
    assert sum("Redis unreachable" in record.message for record in caplog.records) == 1
