"""Request limits: shared through Redis when EPU_REDIS_URL is set, else between the workers of one
instance through a file; per process while Redis is unreachable (degraded, never an error)."""

import fcntl
import hashlib
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from flask import Flask, current_app
from limits import parse

from api.errors import Problem
from epu.actors import Actor
from epu.settings import Settings

log = logging.getLogger(__name__)

FAILED_SCAN_WINDOW = 600
LOOKUP_WINDOW = 600
REDIS_TIMEOUT = 0.15  # seconds: a dead Redis costs a request at most this, then is skipped
REDIS_RETRY_AFTER = 5.0  # seconds without trying Redis once it failed
WARNING_INTERVAL = 60.0
TOKEN_FAILURE_WINDOW = 900.0
TOKEN_FREE_FAILURES = (5, 20)  # per client id, per source address (several clients behind a NAT)
TOKEN_MAX_PAUSE = 60.0
INS_MISMATCHES_PER_LABORATORY = (3600.0, 20)
# The limit counted on every request is taken from Redis in leases of up to this many requests
# (and a hundredth of the limit): each Redis round trip costs a request 0.15 ms of CPU, as much
# as a fifth of a status poll.
MAX_LEASE = 16

# One round trip: drop what left the window, then take a slot if one is free.
_TAKE = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local used = redis.call('ZCARD', key)
local taken = 0
if used < limit then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window * 1000))
    used, taken = used + 1, 1
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {taken, used, tostring(oldest[2] or now)}
"""


@dataclass(frozen=True)
class Take:
    taken: bool
    used: int
    retry_after: int


class MemoryWindows:
    """Sliding windows of one process."""

    def __init__(self):
        self._hits: dict[str, dict[str, float]] = defaultdict(dict)
        self._counts: dict[str, tuple[float, int]] = {}
        self._pauses: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str, window: float, limit: int, member: str) -> Take:
        now = time.time()
        with self._lock:
            hits = self._hits[key]
            for old in [m for m, at in hits.items() if at <= now - window]:
                del hits[old]
            taken = len(hits) < limit
            if taken:
                hits[member] = now
            oldest = min(hits.values(), default=now)
            return Take(taken, len(hits), _retry(oldest, window, now))

    def give_back(self, key: str, member: str) -> None:
        with self._lock:
            self._hits[key].pop(member, None)

    def fixed(self, key: str, window: float, limit: int) -> Take:
        """A fixed window (O(1), for the limit counted on every request)."""
        now = time.time()
        start = now - now % window
        with self._lock:
            began, used = self._counts.get(key, (start, 0))
            used = used + 1 if began == start else 1
            self._counts[key] = (start, used)
        return Take(used <= limit, used, _retry(start, window, now))

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            self._pauses[key] = max(self._pauses.get(key, 0.0), time.time() + seconds)

    def paused_for(self, key: str) -> float:
        return max(0.0, self._pauses.get(key, 0.0) - time.time())


class FileWindows:
    """Sliding windows in a SQLite file: shared by the workers of one instance."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        self._local = threading.local()
        # Workers boot together: switching to WAL takes an exclusive lock that SQLite refuses at
        # once ("database is locked", its busy handler not consulted), so one at a time.
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with closing(sqlite3.connect(self._path, timeout=5, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT, member TEXT, at REAL)")
                db.execute("CREATE INDEX IF NOT EXISTS ix_hits_key_at ON hits (key, at)")
                db.execute("CREATE TABLE IF NOT EXISTS pauses (key TEXT PRIMARY KEY, until REAL)")

    def _connection(self) -> sqlite3.Connection:
        if getattr(self._local, "db", None) is None:
            db = sqlite3.connect(self._path, timeout=5, isolation_level=None)
            db.execute("PRAGMA synchronous=OFF")  # WAL is the file's, set once above
            self._local.db = db
        return self._local.db

    def take(self, key: str, window: float, limit: int, member: str) -> Take:
        now, db = time.time(), self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM hits WHERE key = ? AND at <= ?", (key, now - window))
            used, oldest = db.execute(
                "SELECT count(*), min(at) FROM hits WHERE key = ?", (key,)
            ).fetchone()
            taken = used < limit
            if taken:
                db.execute("INSERT INTO hits VALUES (?, ?, ?)", (key, member, now))
                used, oldest = used + 1, oldest or now
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Take(taken, used, _retry(oldest or now, window, now))

    def give_back(self, key: str, member: str) -> None:
        self._connection().execute("DELETE FROM hits WHERE key = ? AND member = ?", (key, member))

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM hits WHERE key = ?", (key,))

    def pause(self, key: str, seconds: float) -> None:
        self._connection().execute(
            "INSERT INTO pauses VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
            " SET until = max(until, excluded.until)",
            (key, time.time() + seconds),
        )

    def paused_for(self, key: str) -> float:
        row = (
            self._connection().execute("SELECT until FROM pauses WHERE key = ?", (key,)).fetchone()
        )
        return max(0.0, row[0] - time.time()) if row else 0.0


@dataclass
class _Lease:
    start: float  # the window's
    size: int
    left: int
    used: int  # the window's count in Redis when it was taken


class RedisWindows:
    """Sliding windows in Redis, shared by every instance; per process while Redis is down."""

    def __init__(self, url: str):
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._take = self._redis.register_script(_TAKE)
        self._fallback = MemoryWindows()
        self._down_until = 0.0
        self._warned_at = -math.inf
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._leasing = [threading.Lock() for _ in range(64)]

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._down_until = now + REDIS_RETRY_AFTER
            if now - self._warned_at >= WARNING_INTERVAL:
                self._warned_at = now
                log.warning(
                    "Redis unreachable (%s): limits counted per process until it is back",
                    type(error).__name__,
                )

    def take(self, key: str, window: float, limit: int, member: str) -> Take:
        if not self.degraded:
            try:
                now = time.time()
                taken, used, oldest = self._take(keys=[key], args=[now, window, limit, member])
                return Take(bool(taken), int(used), _retry(float(oldest), window, now))
            except redis.RedisError as error:
                self._failed(error)
        return self._fallback.take(key, window, limit, member)

    def fixed(self, key: str, window: float, limit: int) -> Take:
        """A fixed window counted in Redis, a lease at a time: a process takes 1, then 2, 4...
        up to MAX_LEASE requests of the window at once and spends them locally. What it leased
        counts for every instance, so the limit is never exceeded; what a process leased and
        did not use stays its own until the window ends (at most MAX_LEASE - 1 requests).
        Once the window is full, the process refuses the rest of it without asking Redis."""
        now = time.time()
        start = now - now % window
        # One lease in flight per client and process: threads wait for it rather than each
        # leasing its own, which would leave more unused.
        with self._leasing[hash(key) % len(self._leasing)]:
            lease = self._leases.get(key)
            if lease is not None and lease.start == start:
                if lease.left > 0:
                    lease.left -= 1
                    return Take(True, lease.used, _retry(start, window, now))
                if lease.used >= limit:  # the window is full everywhere: counts only grow
                    return Take(False, lease.used, _retry(start, window, now))
                size = min(lease.size * 2, MAX_LEASE, max(1, limit // 100))
            else:
                size = 1
            if not self.degraded:
                try:
                    pipe = self._redis.pipeline(transaction=False)
                    bucket = f"{key}:{int(start)}"
                    pipe.incrby(bucket, size)
                    pipe.expire(bucket, math.ceil(window) + 1)
                    used = int(pipe.execute()[0])
                except redis.RedisError as error:
                    self._failed(error)
                else:
                    usable = max(0, min(size, limit - (used - size)))
                    self._keep_lease(key, _Lease(start, size, max(0, usable - 1), used))
                    return Take(usable > 0, used, _retry(start, window, now))
        return self._fallback.fixed(key, window, limit)

    def _keep_lease(self, key: str, lease: _Lease) -> None:
        with self._lock:
            if len(self._leases) >= 10_000:
                for old in [k for k, kept in self._leases.items() if kept.start != lease.start]:
                    del self._leases[old]
            self._leases[key] = lease

    def give_back(self, key: str, member: str) -> None:
        self._fallback.give_back(key, member)
        if not self.degraded:
            try:
                self._redis.zrem(key, member)
            except redis.RedisError as error:
                self._failed(error)

    def clear(self, key: str) -> None:
        self._fallback.clear(key)
        if not self.degraded:
            try:
                self._redis.delete(key)
            except redis.RedisError as error:
                self._failed(error)

    def pause(self, key: str, seconds: float) -> None:
        self._fallback.pause(key, seconds)
        if not self.degraded:
            try:
                self._redis.set(key, time.time() + seconds, px=math.ceil(seconds * 1000))
            except redis.RedisError as error:
                self._failed(error)

    def paused_for(self, key: str) -> float:
        if not self.degraded:
            try:
                until = self._redis.get(key)
                return max(0.0, float(until) - time.time()) if until else 0.0
            except redis.RedisError as error:
                self._failed(error)
        return self._fallback.paused_for(key)

    def ping(self) -> bool:
        """Whether Redis answers now (and, if it does, shared counting resumes)."""
        try:
            self._redis.ping()
        except redis.RedisError as error:
            self._failed(error)
            return False
        self._down_until = 0.0
        return True


def _retry(oldest: float, window: float, now: float) -> int:
    return max(1, math.ceil(oldest + window - now))


def windows_for(settings: Settings):
    if settings.redis_url:
        return RedisWindows(settings.redis_url)
    if settings.limits_path:
        return FileWindows(Path(settings.limits_path))
    return MemoryWindows()


class Limits:
    def __init__(self, settings: Settings):
        self._windows = windows_for(settings)
        # Counted on every request: a file write each time would cost more than it protects.
        self._per_request = MemoryWindows() if isinstance(self._windows, FileWindows) else None
        requests = parse(settings.rate_limit)
        self._requests = (float(requests.get_expiry()), requests.amount)
        self._failed_scans = (float(FAILED_SCAN_WINDOW), settings.failed_scan_limit)
        self._lookups = (float(LOOKUP_WINDOW), settings.lookup_limit)

    @property
    def state(self) -> str:
        """ "shared" (Redis), "instance" (a file), "process" (memory) or "degraded"."""
        if isinstance(self._windows, RedisWindows):
            return "shared" if self._windows.ping() else "degraded"
        return "instance" if isinstance(self._windows, FileWindows) else "process"

    def take(self, key: str, window: float, limit: int) -> tuple[Take, str]:
        member = secrets.token_hex(8)
        return self._windows.take(key, window, limit, member), member

    def give_back(self, key: str, member: str) -> None:
        self._windows.give_back(key, member)

    def clear(self, key: str) -> None:
        self._windows.clear(key)

    def count_request(self, actor: Actor) -> None:
        window, limit = self._requests
        took = (self._per_request or self._windows).fixed(
            f"epu:requests:{actor.client_pk}", window, limit
        )
        if not took.taken:
            raise too_many("Too many requests from this client; slow down.", took.retry_after)

    def _scans_key(self, actor: Actor) -> str:
        return f"epu:failed-scans:{actor.client_pk}"

    def check_scans_allowed(self, actor: Actor) -> None:
        """429 while this laboratory's failed scans fill the window (reserves nothing)."""
        window, limit = self._failed_scans
        key = self._scans_key(actor)
        took, member = self.take(key, window, limit)
        if took.taken:
            self.give_back(key, member)
        else:
            raise _scans_paused(took.retry_after)

    def failed_scan_slot(self, actor: Actor):
        """A slot of the failed-scan allowance, taken before the scan, so that concurrent scans
        never overshoot it; given back unless the scan keeps it (an unknown code)."""
        window, limit = self._failed_scans
        return self._slot(self._scans_key(actor), window, limit, _scans_paused)

    def ins_mismatch_slot(self, actor: Actor):
        """The same for the INS mismatches of one laboratory (all prescriptions together)."""
        window, limit = INS_MISMATCHES_PER_LABORATORY
        return self._slot(f"epu:ins-mismatches:{actor.client_pk}", window, limit, _ins_paused)

    @contextmanager
    def _slot(self, key: str, window: float, limit: int, refusal) -> Iterator["ScanSlot"]:
        took, member = self.take(key, window, limit)
        if not took.taken:
            raise refusal(took.retry_after)
        slot = ScanSlot(exhausted=took.used >= limit)
        try:
            yield slot
        finally:
            if not slot.kept:
                self.give_back(key, member)

    def count_failed_scan(self, actor: Actor) -> bool:
        """Count a scan of an unknown code; True when this one exhausts the allowance."""
        with self.failed_scan_slot(actor) as slot:
            slot.keep()
        return slot.exhausted

    def count_lookup(self, actor: Actor) -> None:
        """Count a patient lookup (by INS and birth date); 429 past the allowance."""
        window, limit = self._lookups
        took, _ = self.take(f"epu:patient-lookups:{actor.client_pk}", window, limit)
        if not took.taken:
            raise too_many(
                "Too many patient lookups from this client; lookups are paused.", took.retry_after
            )

    # ---- the token endpoint: exponential pauses, never a lockout ---------------------------

    def check_token_attempt(self, client_id: str, address: str) -> None:
        """429 while this client id or this address is paused after repeated wrong secrets."""
        wait = max(self._windows.paused_for(key) for key in _token_keys(client_id, address, "p"))
        if wait > 0:
            raise too_many(
                "Too many failed authentications for this client or address; retry later.",
                math.ceil(wait),
            )

    def count_token_failure(self, client_id: str, address: str) -> None:
        for key, free in zip(
            _token_keys(client_id, address, "f"), TOKEN_FREE_FAILURES, strict=True
        ):
            took, _ = self.take(key, TOKEN_FAILURE_WINDOW, 10**6)
            if took.used > free:
                pause = min(TOKEN_MAX_PAUSE, 2.0 ** (took.used - free - 1))
                self._windows.pause(key[:-2] + ":p", pause)

    def forget_token_failures(self, client_id: str) -> None:
        self._windows.clear(_token_keys(client_id, "", "f")[0])


def _token_keys(client_id: str, address: str, kind: str) -> tuple[str, str]:
    client = hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()[:32]
    return f"epu:token:client:{client}:{kind}", f"epu:token:addr:{address[:64]}:{kind}"


@dataclass
class ScanSlot:
    exhausted: bool
    kept: bool = False

    def keep(self) -> None:
        self.kept = True


def too_many(detail: str, retry_after: int) -> Problem:
    return Problem(429, detail, headers={"Retry-After": str(retry_after)})


def _scans_paused(retry_after: int) -> Problem:
    return too_many(
        "Too many scans of unknown codes from this laboratory; scanning is paused.", retry_after
    )


def _ins_paused(retry_after: int) -> Problem:
    return Problem(
        429,
        "Too many INS mismatches from this laboratory: INS checks are paused; scan without "
        "patient_ins, or retry later.",
        slug="ins_checks_paused",
        title="INS checks paused",
        headers={"Retry-After": str(retry_after)},
    )


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["epu.limits"] = Limits(settings)


def limits() -> Limits:
    return current_app.extensions["epu.limits"]
