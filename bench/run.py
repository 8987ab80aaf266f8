"""`make bench`: EPU under gunicorn on a fresh PostgreSQL database, against bare baselines.

    .venv/bin/python -m bench.run        (or .venv/bin/python bench/run.py)

Knobs (environment): BENCH_SECONDS, BENCH_WARMUP, BENCH_WORKERS, BENCH_THREADS,
BENCH_CONCURRENCY, BENCH_SCENARIOS, BENCH_MAX_REQUESTS, BENCH_PROFILE, BENCH_POSTGRES,
BENCH_REDIS, SOAK.
"""

import functools
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    bodies,
    database,
    hardening,
    measure,
    prepare,
    profiling,
    queries,
    report,
    scenarios,
    server,
    soak,
    webhooks,
)
from bench.console import log
from bench.database import Account, Database
from bench.load import Bounds, CallSource
from bench.report import Row
from bench.scenarios import SCENARIOS, Scenario, World
from bench.server import GunicornSettings, Server
from epu.actors import LAB, PRESCRIBER

OUT = Path(__file__).resolve().parent / "out"
PARTIES = 32  # prescribers and laboratories each: one per thread at the highest concurrency
SCAN_SPEED_OVER_CREATE = 4.0  # scans run about twice as fast as creates: ample margin
MIN_SCAN_CODES = 3000
BASELINE_TITLES = {"insert": "baseline: 1 INSERT", "select": "baseline: 1 SELECT by pk"}


@dataclass(frozen=True)
class Config:
    seconds: float
    warmup: float
    gunicorn: GunicornSettings
    concurrencies: tuple[int, ...]
    scenarios: tuple[str, ...]
    max_requests: int
    profile: str  # '' (off), '1' or 'gil' (CPU), 'wall'
    postgres: str
    soak_seconds: int
    reconnect_every: int

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ.get
        names = tuple(s.name for s in SCENARIOS)
        chosen = tuple(n for n in env("BENCH_SCENARIOS", ",".join(names)).split(",") if n)
        if unknown := set(chosen) - set(names):
            raise SystemExit(f"unknown BENCH_SCENARIOS {sorted(unknown)}; known: {names}")
        return cls(
            seconds=float(env("BENCH_SECONDS", "5")),
            warmup=float(env("BENCH_WARMUP", "1")),
            gunicorn=GunicornSettings(
                int(env("BENCH_WORKERS", "4")), int(env("BENCH_THREADS", "2"))
            ),
            concurrencies=tuple(int(c) for c in env("BENCH_CONCURRENCY", "1,8,32").split(",")),
            scenarios=chosen,
            max_requests=int(env("BENCH_MAX_REQUESTS", "200000")),
            profile=env("BENCH_PROFILE", ""),
            postgres=env("BENCH_POSTGRES", database.DEFAULT_SERVER),
            soak_seconds=int(env("SOAK", "0") or 0),
            reconnect_every=int(env("BENCH_RECONNECT_EVERY", "50")),
        )

    def bounds(self, seconds: float | None = None) -> Bounds:
        return Bounds(
            seconds=seconds or self.seconds,
            max_requests=self.max_requests,
            reconnect_every=self.reconnect_every,
        )

    @property
    def paired_seconds(self) -> float:
        """The baseline measured right after each scenario row: shorter, it is cheap and fast."""
        return max(1.0, self.seconds / 2)


def service_env(db: Database, secret: str) -> dict[str, str]:
    env = {
        "EPU_DATABASE_URL": db.url,
        "EPU_SECRET_KEY": secret,
        "EPU_RATE_LIMIT": "1000000/minute",
        "EPU_FAILED_SCAN_LIMIT": "1000000",
        "EPU_LOOKUP_LIMIT": "1000000",
        "EPU_INSTANCE_DIR": str(OUT / "instance"),
    }
    redis_url = limits_redis()
    if redis_url:
        env["EPU_REDIS_URL"] = redis_url
    return env


@functools.cache
def limits_redis() -> str | None:
    """The Redis the service counts its limits in, as in production (BENCH_REDIS; empty: the
    instance's file, as `make run`). Its limits are out of reach, so keys left by an earlier
    run change nothing."""
    url = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
    if not url:
        return None
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        if "BENCH_REDIS" in os.environ:
            raise SystemExit(f"BENCH_REDIS={url} is unreachable: {error}") from error
        log(f"no Redis at {url}: limits counted in the instance's file, unlike production")
        return None
    return url


@dataclass
class Bench:
    """Both servers side by side: EPU and the bare baseline, with the same gunicorn settings.
    Each scenario row is followed at once by its baseline at the same concurrency, so that a
    busy neighbour on the machine weighs on both sides of the ratio alike."""

    config: Config
    db: Database
    epu: Server
    baseline: Server
    world: World
    rows: list[Row] = field(default_factory=list)

    def measure(self, gunicorn: Server, source: CallSource, concurrency: int, seconds: float,
                name: str = "", title: str = "") -> Row:  # fmt: skip
        bounds = self.config.bounds(seconds)
        row, _ = measure.measure(
            gunicorn, self.db.name, source, concurrency, bounds, name=name, title=title
        )
        return row

    def baseline_source(self, kind: str) -> CallSource:
        if kind == "insert":
            return scenarios.baseline_inserts(self.baseline.port)
        return scenarios.baseline_selects(self.baseline.port, database.BASELINE_ROWS)

    def run(self, scenario: Scenario, gunicorn: Server, source: CallSource) -> list[Row]:
        if self.config.warmup:
            self.measure(gunicorn, source, 8, self.config.warmup)
        rows = []
        for concurrency in self.config.concurrencies:
            row = self.measure(
                gunicorn, source, concurrency, self.config.seconds, scenario.name, scenario.title
            )
            row.baseline, row.target_ratio = scenario.baseline, scenario.target_ratio
            row.p99_limit_ms = scenario.p99_ms
            if scenario.baseline:
                paired = self.measure(
                    self.baseline,
                    self.baseline_source(scenario.baseline),
                    concurrency,
                    self.config.paired_seconds,
                )
                row.baseline_throughput = paired.throughput
                row.baseline_cpu_ms = (paired.worker_cpu_ms or 0) + (paired.db_cpu_ms or 0)
            rows.append(row)
            paired = f" (baseline {row.baseline_throughput:.1f})" if scenario.baseline else ""
            log(
                f"{scenario.name} c={concurrency}: {row.throughput:.1f} req/s{paired}, "
                f"p99 {row.p99_ms:.1f} ms"
            )
        self.rows += rows
        return rows

    def profile(self, scenario: Scenario, source: CallSource, profiler) -> None:
        if profiler is None or scenario.name not in profiling.PROFILED:
            return
        log(f"{scenario.name}: profiling with py-spy at c=8 (not counted in the table)")
        profiler.start(scenario.name, self.config.seconds)
        self.measure(self.epu, source, 8, self.config.seconds)
        profiler.finish()

    def scan_codes_needed(self) -> int:
        creates = [row.throughput for row in self.rows if row.scenario == "create"]
        seconds = self.config.warmup + self.config.seconds * len(self.config.concurrencies)
        estimate = max(creates, default=100.0) * SCAN_SPEED_OVER_CREATE * seconds
        return max(MIN_SCAN_CODES, int(estimate))

    def run_scenarios(self) -> None:
        profiler = profiling.Profiler.maybe(self.config.profile, self.epu, OUT)
        self.run(scenarios.HEALTHZ, self.epu, scenarios.HEALTHZ.source(self.world))
        for scenario in SCENARIOS:
            if scenario.name not in self.config.scenarios:
                continue
            if scenario.check and (why := scenario.check(self.world)):
                log(f"{scenario.name}: skipped: {why}")
                self.rows += [
                    measure.skipped(scenario.name, scenario.title, c, why)
                    for c in self.config.concurrencies
                ]
                continue
            if scenario.consumes_codes:
                prepare.top_up_scan_codes(self.world, self.db, self.scan_codes_needed())
            database.analyze(self.db)  # autovacuum may be off: keep the planner's statistics
            source = scenario.source(self.world)
            self.run(scenario, self.epu, source)
            self.profile(scenario, source, profiler)

    def run_baselines(self) -> None:
        """The baselines on their own, at every concurrency: for their latency and CPU."""
        for kind, title in BASELINE_TITLES.items():
            source = self.baseline_source(kind)
            scenario = Scenario(kind, title, None, lambda _world, s=source: s)
            self.run(scenario, self.baseline, source)


def run_servers(
    config: Config, db: Database, env: dict[str, str], accounts, after=None
) -> list[Row]:
    """Both servers, the scenarios, `after(bench)` if given (the growth mode's retention
    commands), then the baselines on their own."""
    epu = server.start("wsgi:app", config.gunicorn, env, OUT, "epu")
    baseline = None
    try:
        baseline = server.start("bench.baseline:app", config.gunicorn, env, OUT, "baseline")
        world = prepare.make_world(epu, *accounts)
        log("creating each prescriber's own prescriptions (warm-up)")
        prepare.fill_read_codes(world)
        bench = Bench(config, db, epu, baseline, world)
        bench.run_scenarios()
        if after is not None:
            after(bench)
        bench.run_baselines()
        return bench.rows
    finally:
        epu.stop()
        if baseline is not None:
            baseline.stop()


# ---- the whole run --------------------------------------------------------------------------


def meta(config: Config, started: float, load_at_start: str) -> dict[str, object]:
    return {
        "command": " ".join(["make bench"] + _knobs()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "gunicorn": f"{config.gunicorn.label} (workers x threads, gthread)",
        "seconds_per_measure": config.seconds,
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "postgres": "127.0.0.1:5432",
        "load_average_at_start": load_at_start,
        "run_seconds": round(time.monotonic() - started),
    }


def _knobs() -> list[str]:
    names = ("BENCH_BASE", "BENCH_GROWTH_PASSES", "BENCH_SECONDS", "BENCH_WARMUP",
             "BENCH_WORKERS", "BENCH_THREADS", "BENCH_CONCURRENCY", "BENCH_SCENARIOS",
             "BENCH_PROFILE", "BENCH_REDIS", "BENCH_RECONNECT_EVERY", "SOAK")  # fmt: skip
    shown = [n for n in names if os.environ.get(n) not in (None, "", "0")]
    if os.environ.get("BENCH_RECONNECT_EVERY") == "0":  # off is not the default here
        shown.append("BENCH_RECONNECT_EVERY")
    return [f"{n}={os.environ[n]}" for n in shown]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_accounts(db: Database) -> tuple[list[Account], list[Account]]:
    return (
        database.create_accounts(db, PRESCRIBER, bodies.rpps_numbers(PARTIES)),
        database.create_accounts(db, LAB, bodies.finess_numbers(PARTIES)),
    )


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def main() -> int:
    started = time.monotonic()
    config = Config.from_env()
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    load_at_start = " ".join(f"{value:.2f}" for value in os.getloadavg())
    log(f"gunicorn {config.gunicorn.label}, {config.seconds:g} s per measure, load {load_at_start}")
    log(f"limits counted in {limits_redis() or 'the instance file (no Redis)'}")
    if os.environ.get("BENCH_BASE"):
        return growth_main(config, stamp, started, load_at_start)
    db = database.create(config.postgres)
    log(f"database {db.name}")
    try:
        env = service_env(db, new_secret())
        database.prepare(db, env)
        accounts = make_accounts(db)
        database.create_baseline_table(db)
        rows = run_servers(config, db, env, accounts)
        report.judge(rows)
        trips = queries.round_trips(db, env["EPU_SECRET_KEY"], accounts[0][0], accounts[1][0])
        extra = f"\n## Database round trips per request\n\n{trips}\n"
        extra += "\n" + hardening.run(config.gunicorn, db, env, accounts, OUT)
        if os.environ.get("BENCH_WEBHOOKS", "1") != "0":
            extra += "\n" + webhooks.run(db, env, OUT)
        if config.soak_seconds > 0:
            extra += "\n" + soak.run(config.soak_seconds, config.gunicorn, db, env, accounts, OUT)
        info = meta(config, started, load_at_start)
        print()
        print(report.text_table(rows))
        print()
        print(report.targets_text(rows))
        for line in report.failures(rows) or ["all targets met"]:
            print(f"  {line}")
        print(extra)
        path = report.write(OUT, stamp, info, rows, extra)
        log(f"written {path} (and bench/out/latest.md, .json) in {info['run_seconds']} s")
        return 0
    finally:
        database.drop(db)
        shutil.rmtree(OUT / "instance", ignore_errors=True)


def growth_main(config: Config, stamp: str, started: float, load_at_start: str) -> int:
    from bench import growth

    text = growth.run(config, sys.modules[__name__])
    info = meta(config, started, load_at_start)
    settings = ", ".join(f"{key}={value}" for key, value in info.items())
    document = f"Command: `{info['command']}`\n\n{settings}\n\n{text}\n"
    for name in (f"growth-{stamp}", "growth-latest"):
        (OUT / f"{name}.md").write_text(document)
    log(f"written bench/out/growth-{stamp}.md (and growth-latest.md) in {info['run_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
