"""Soak mode (SOAK=seconds): a realistic mix at 80% of its measured maximum, for a long time.

Per 100 requests: 10 creates, 10 scans, 8 laboratory changes (4 modifications, 4 done marks),
60 status polls (45 answered 304, 15 answered 200) and 12 full reads. Reported: unexpected
answers (no 5xx allowed), p99 of the first and of the last window (a minute), and the workers'
memory (RSS) from start to end.
"""

import itertools
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import bodies, database, load, prepare, scenarios, server
from bench.client import Response, json_bytes
from bench.console import log
from bench.database import Account, Database
from bench.load import Bounds, Call, Measurement
from bench.scenarios import OK, World
from bench.server import GunicornSettings, Server

MIX = {"create": 10, "scan": 10, "modify": 4, "done": 4, "status_304": 45, "status_200": 15}
MIX["read"] = 100 - sum(MIX.values())  # 12
CONCURRENCY = 32
LOAD_SHARE = 0.80
MAX_PROBE_SECONDS = 15
SCAN_BUFFER = 2000  # codes waiting for a scan before the soak starts
WATCH_EVERY_S = 10
ANALYZE_EVERY_S = 60
MAX_WINDOW_S = 60


@dataclass
class Held:
    """A prescription a laboratory holds: what it needs to change it or report it done."""

    code: str
    version: int
    lines: list[dict]


@dataclass
class Mix:
    """The soak's call source: each thread cycles through a shuffled list of 100 kinds."""

    world: World
    held: list[deque] = field(default_factory=list)  # per laboratory
    substituted: int = 0  # a change or scan with nothing to work on: a poll instead

    def __post_init__(self) -> None:
        self.held = [deque() for _ in self.world.labs]

    def source(self, thread: int) -> Iterator[Call]:
        kinds = [kind for kind, count in MIX.items() for _ in range(count)]
        random.Random(thread).shuffle(kinds)
        creates = scenarios.creates(self.world)(thread)
        polls = scenarios.status_polls(self.world, not_modified=True)(thread)
        fresh_polls = scenarios.status_polls(self.world, not_modified=False)(thread)
        reads = scenarios.reads(self.world)(thread)
        simple = {"create": creates, "status_304": polls, "status_200": fresh_polls, "read": reads}
        for kind in itertools.cycle(kinds):
            if kind in simple:
                yield next(simple[kind])
            else:
                yield self._lab_call(kind, thread) or next(polls)

    def _lab_call(self, kind: str, thread: int) -> Call | None:
        lab_index = thread % len(self.world.labs)
        lab, held = self.world.labs[lab_index], self.held[lab_index]
        if kind == "scan":
            return self._scan(lab, held)
        try:
            item = held.popleft()
        except IndexError:
            self.substituted += 1
            return None
        if kind == "modify":
            payload = self.world.request(
                "PATCH",
                f"/api/v1/prescriptions/{item.code}",
                lab,
                headers={"If-Match": f'"v{item.version}"'},
                body=json_bytes(bodies.ADD_ONE_LINE),
            )
            return Call(payload, OK, "modify", lambda response: _keep(held, response))
        payload = self.world.request(
            "POST",
            f"/api/v1/prescriptions/{item.code}/done",
            lab,
            body=json_bytes(bodies.done_all(item.lines)),
        )
        return Call(payload, OK, "done")

    def _scan(self, lab, held: deque) -> Call | None:
        try:
            code = self.world.scan_codes.popleft()
        except IndexError:
            self.substituted += 1
            return None
        payload = self.world.request("POST", "/api/v1/scans", lab, body=json_bytes({"code": code}))
        return Call(payload, OK, "scan", lambda response: _keep(held, response))


def _keep(held: deque, response: Response) -> None:
    body = response.json()
    held.append(Held(body["code"], body["version"], body["lines"]))


# ---- memory and CPU over time ---------------------------------------------------------------


@dataclass
class Snapshot:
    at: float  # time.monotonic()
    rss: dict[int, float]  # worker pid -> MiB
    workers_cpu: float  # cumulative CPU seconds of the current workers
    backends_cpu: float  # of this database's PostgreSQL backends
    machine_busy: float  # of the whole machine
    client_cpu: float  # of this process (the load generator)


class Watch:
    """The workers' RSS and everyone's CPU, every few seconds, in a thread of its own."""

    def __init__(self, gunicorn: Server, db: Database, seconds: float, analyze: bool):
        self.gunicorn, self.db, self.seconds, self.analyze = gunicorn, db, seconds, analyze
        self.database_name = db.name
        self.samples: list[Snapshot] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = self.gunicorn.worker_pids()
        self.samples.append(
            Snapshot(
                at=time.monotonic(),
                rss={pid: server.rss_mib(pid) or 0.0 for pid in pids},
                workers_cpu=server.cpu_seconds(pids),
                backends_cpu=server.cpu_seconds(server.backend_pids(self.database_name)),
                machine_busy=server.machine_busy_seconds(),
                client_cpu=time.process_time(),
            )
        )

    def nearest(self, moment: float) -> Snapshot:
        return min(self.samples, key=lambda snapshot: abs(snapshot.at - moment))

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds + 120
        for tick in itertools.count(1):
            if self._stop.wait(WATCH_EVERY_S) or time.monotonic() > deadline:
                return
            self.sample()
            if self.analyze and tick % (ANALYZE_EVERY_S // WATCH_EVERY_S) == 0:
                database.analyze(self.db)  # what autovacuum would do, were it on

    def __enter__(self) -> "Watch":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(WATCH_EVERY_S + 5)
        self.sample()


# ---- analysis -------------------------------------------------------------------------------


def window_p99(result: Measurement, start: float, end: float) -> tuple[float, int]:
    values = sorted(
        latency
        for sample in result.samples
        for offset, latency in sample.timeline
        if start <= offset < end
    )
    return load.percentile(values, 0.99), len(values)


def memory_lines(watch: Watch) -> list[str]:
    start, end = watch.samples[0], watch.samples[-1]
    first, last = start.rss, end.rss
    middle = watch.samples[len(watch.samples) // 2].rss
    lines = []
    for pid in sorted(first):
        if pid not in last:
            lines.append(f"  - worker {pid}: {first[pid]:.1f} MiB at start, gone (restarted!)")
            continue
        lines.append(
            f"  - worker {pid}: {first[pid]:.1f} → {last[pid]:.1f} MiB "
            f"({last[pid] - first[pid]:+.1f} MiB over {end.at - start.at:.0f} s; "
            f"{last[pid] - middle.get(pid, last[pid]):+.1f} MiB in the second half)"
        )
    restarted = sorted(set(last) - set(first))
    lines += [f"  - worker {pid}: new during the soak (a restart)" for pid in restarted]
    return lines


def minutes_table(result: Measurement, watch: Watch, started: float) -> list[str]:
    """Per window: throughput, latency, and CPU per request (workers, PostgreSQL, others)."""
    steps = max(1, round(min(MAX_WINDOW_S, result.elapsed_s / 10) / WATCH_EVERY_S))
    window = float(WATCH_EVERY_S * steps)  # whole intervals between two snapshots
    lines = [
        "| from s | req/s | p50 ms | p99 ms | worker CPU ms/req | db CPU ms/req | noise |",
        "|---|---|---|---|---|---|---|",
    ]
    begin = 0.0
    while begin < result.elapsed_s - 1:
        end = min(begin + window, result.elapsed_s)
        values = sorted(
            latency
            for sample in result.samples
            for offset, latency in sample.timeline
            if begin <= offset < end
        )
        a, b = watch.nearest(started + begin), watch.nearest(started + end)
        count, span = max(len(values), 1), max(b.at - a.at, 1e-3)
        workers, backends = b.workers_cpu - a.workers_cpu, b.backends_cpu - a.backends_cpu
        client = b.client_cpu - a.client_cpu
        others = b.machine_busy - a.machine_busy - workers - backends - client
        share = max(0.0, others) / (span * (os.cpu_count() or 1))
        lines.append(
            f"| {begin:.0f} | {len(values) / (end - begin):.1f} "
            f"| {load.percentile(values, 0.5):.1f} | {load.percentile(values, 0.99):.1f} "
            f"| {workers * 1000 / count:.2f} | {backends * 1000 / count:.2f} | {share:.0%} |"
        )
        begin = end
    return lines


def summary(
    result: Measurement, seconds: float, watch: Watch, started: float, rate: float, mix: Mix
) -> str:
    window = min(MAX_WINDOW_S, seconds / 4)
    first_p99, first_n = window_p99(result, 0, window)
    last_p99, last_n = window_p99(result, result.elapsed_s - window, result.elapsed_s + 1)
    unexpected = result.unexpected()
    server_errors = sum(n for (_kind, status), n in unexpected.items() if status >= 500)
    failures = sum(n for (_kind, status), n in unexpected.items() if status == 0)
    by_kind = {}
    for sample in result.samples:
        for kind, values in sample.by_kind.items():
            by_kind.setdefault(kind, []).extend(values)
    kinds = ", ".join(
        f"{kind} {len(values)} (p99 {load.percentile(sorted(values), 0.99):.1f} ms)"
        for kind, values in sorted(by_kind.items())
    )
    lag = max(sample.max_lag_ms for sample in result.samples)
    drift = last_p99 - first_p99
    lines = [
        f"## Soak: {seconds:.0f} s at {rate:.1f} req/s (80% of the mix's maximum), c={CONCURRENCY}",
        "",
        f"- requests: {result.requests} in {result.elapsed_s:.0f} s "
        f"({result.throughput:.1f} req/s); by kind: {kinds}",
        f"- unexpected answers: {sum(unexpected.values())} "
        f"({dict((f'{k} {s}', n) for (k, s), n in unexpected.items())}); "
        f"**5xx: {server_errors}**{' (must be 0)' if server_errors else ''}; "
        f"connection failures: {failures}",
        f"- p99 first {window:.0f} s: {first_p99:.1f} ms ({first_n} requests); "
        f"last {window:.0f} s: {last_p99:.1f} ms ({last_n} requests); "
        f"drift {drift:+.1f} ms ({drift / first_p99:+.0%})"
        if first_p99
        else "- p99: no requests in the first window",
        f"- generator: largest lag behind schedule {lag:.0f} ms; "
        f"{mix.substituted} scans or changes had nothing to work on and polled instead",
        "- workers' memory (RSS):",
        *memory_lines(watch),
        "",
        *minutes_table(result, watch, started),
    ]
    return "\n".join(lines)


# ---- the soak -------------------------------------------------------------------------------


def run(
    seconds: int,
    settings: GunicornSettings,
    db: Database,
    env: dict[str, str],
    accounts: tuple[list[Account], list[Account]],
    out: Path,
) -> str:
    gunicorn = server.start("wsgi:app", settings, env, out, "soak")
    try:
        world = prepare.make_world(gunicorn, *accounts)
        prepare.fill_read_codes(world)
        prepare.top_up_scan_codes(world, db, SCAN_BUFFER)
        mix = Mix(world)
        probe = load.run(
            gunicorn.port,
            mix.source,
            CONCURRENCY,
            Bounds(seconds=min(MAX_PROBE_SECONDS, max(5.0, seconds / 10)), max_requests=50_000),
        )
        rate = LOAD_SHARE * probe.throughput
        log(f"soak: the mix's maximum is {probe.throughput:.1f} req/s; {seconds} s at {rate:.1f}")
        prepare.top_up_scan_codes(world, db, SCAN_BUFFER)
        bounds = Bounds(
            seconds=seconds,
            max_requests=int(rate * seconds * 1.2) + 1000,
            rate_per_s=rate,
            keep_timeline=True,
        )
        analyze = not database.autovacuum_on(db)
        with Watch(gunicorn, db, seconds, analyze) as watch:
            started = time.monotonic()
            result = load.run(gunicorn.port, mix.source, CONCURRENCY, bounds)
        text = summary(result, seconds, watch, started, rate, mix)
        if analyze:
            text += (
                "\n\nautovacuum is off on this PostgreSQL server: the soak ran ANALYZE every "
                f"{ANALYZE_EVERY_S} s in its stead (without it the planner's statistics go stale)."
            )
        samples = [asdict(snapshot) for snapshot in watch.samples]
        (out / "soak.json").write_text(
            json.dumps({"rate": rate, "samples": samples, "text": text}, indent=1)
        )
        return text
    finally:
        gunicorn.stop()
