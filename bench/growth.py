"""Growth mode: `BENCH_BASE=10000,1000000 make bench` measures the same rows on bases of that
many prescriptions (each base in a fresh database filled by bench/growth_data.py), then runs
`epu expire` and `epu purge` while a laboratory keeps scanning, and compares p50 and p99 of
each row with those of the smallest base (target: within 1.3x).

Defaults in this mode: c=8 only, and the rows that touch the growing tables.
"""

import dataclasses
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

from bench import database, growth_data, load, prepare
from bench.client import Connection, json_bytes
from bench.console import log
from bench.database import Database
from bench.growth_data import Filled
from bench.report import Row
from bench.scenarios import SCENARIOS, World
from epu.settings import Settings

GROWTH_SCENARIOS = (
    "create",
    "scan",
    "status_304",
    "read",
    "fhir_read",
    "fhir_search",
    "fhir_page",
    "patient_lookup",  # when it exists (issue 10)
)
P_RATIO_TARGET = 1.3
PROBE_EVERY_S = 0.02  # the scanning laboratory during expire and purge: 50 scans/s at most
PROBE_CODES = 6000
QUIET_SECONDS = 3.0
SCAN_DELAY_LIMIT_MS = 50.0


@dataclass
class Command:
    """One retention command, and the scans that ran meanwhile."""

    name: str
    seconds: float
    output: str
    scans: list[float]  # latencies (ms) of the scans that started while it ran

    def summary(self, quiet_p50: float) -> str:
        ordered = sorted(self.scans)
        if not ordered:
            return f"| `epu {self.name}` | {self.seconds:.1f} | {self.output} | 0 | - | - | - | - |"
        p50, p99 = load.percentile(ordered, 0.5), load.percentile(ordered, 0.99)
        delay = ordered[-1] - quiet_p50
        verdict = "PASS" if delay <= SCAN_DELAY_LIMIT_MS else "FAIL"
        return (
            f"| `epu {self.name}` | {self.seconds:.1f} | {self.output} | {len(ordered)} | "
            f"{p50:.1f} | {p99:.1f} | {ordered[-1]:.1f} | {delay:.1f} {verdict} |"
        )


@dataclass
class Base:
    size: int
    filled: Filled
    passes: list[list[Row]] = field(default_factory=list)
    quiet_scans: list[float] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        """Each row's median over the passes (one pass: itself)."""
        by_name: dict[str, list[Row]] = {}
        for rows in self.passes:
            for row in rows:
                if row.requests:
                    by_name.setdefault(row.scenario, []).append(row)
        return [_median_row(rows) for rows in by_name.values()]


def _median_row(rows: list[Row]) -> Row:
    def median(name: str) -> float | None:
        values = [getattr(row, name) for row in rows if getattr(row, name) is not None]
        return statistics.median(values) if values else None

    measured = ("throughput", "p50_ms", "p95_ms", "p99_ms", "worker_cpu_ms", "db_cpu_ms")
    return dataclasses.replace(rows[0], **{name: median(name) for name in measured})


class ScanProber:
    """One laboratory scanning distinct active codes, paced, recording (start, latency)."""

    def __init__(self, world: World):
        self.world, self.samples = world, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.ran_out = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        connection = Connection(self.world.port)
        lab = self.world.labs[0]
        try:
            while not self._stop.is_set():
                try:
                    code = self.world.scan_codes.popleft()
                except IndexError:
                    self.ran_out = True
                    return
                body = json_bytes({"code": code})
                payload = self.world.request("POST", "/api/v1/scans", lab, body=body)
                began = time.perf_counter()
                connection.exchange(payload)
                latency = (time.perf_counter() - began) * 1000
                self.samples.append((began, latency))
                self._stop.wait(max(0.0, PROBE_EVERY_S - latency / 1000))
        finally:
            connection.close()

    def between(self, start: float, end: float) -> list[float]:
        return [latency for began, latency in self.samples if start <= began < end]


def epu_output(db: Database, env: dict[str, str], *args: str) -> str:
    environment = {**os.environ, **env, "EPU_DATABASE_URL": db.url}
    command = [str(database.EPU), *args]  # our own fixed arguments
    result = subprocess.run(  # noqa: S603
        command, env=environment, cwd=database.REPO, check=True, capture_output=True, text=True
    )
    return result.stdout.strip().replace("\n", " ")


def retention(db: Database, env: dict[str, str], world: World, base: Base) -> None:
    """`epu expire`, then `epu purge`, while a laboratory scans: how long each scan waits."""
    prepare.top_up_scan_codes(world, db, PROBE_CODES)
    prober = ScanProber(world)
    prober.start()
    time.sleep(QUIET_SECONDS)
    base.quiet_scans = prober.between(0, time.perf_counter())
    for args in (("expire",), ("purge", "--older-than", str(growth_data.PURGE_AFTER_DAYS))):
        log(f"base {base.size}: epu {' '.join(args)}, a laboratory scanning meanwhile")
        began = time.perf_counter()
        output = epu_output(db, env, *args)
        ended = time.perf_counter()
        base.commands.append(
            Command(" ".join(args), ended - began, output, prober.between(began, ended))
        )
    prober.stop()
    if prober.ran_out:
        log("the scanning laboratory ran out of codes before the commands ended")


def run(config, run_module) -> str:
    """Every base in turn; returns the Markdown comparison (also printed)."""
    bases = _bases()
    env_names = set(os.environ)
    if "BENCH_CONCURRENCY" not in env_names:
        config = dataclasses.replace(config, concurrencies=(8,))
    if "BENCH_SCENARIOS" not in env_names:
        known = {s.name for s in SCENARIOS}
        config = dataclasses.replace(
            config, scenarios=tuple(n for n in GROWTH_SCENARIOS if n in known)
        )
    prepared = []
    try:
        for size in sorted(bases):
            prepared.append(prepare_base(config, run_module, size))
        passes = _passes()
        for number in range(1, passes + 1):
            for base, db, env, accounts in prepared:
                log(f"growth: pass {number} of {passes}, base of {base.size} prescriptions")
                last = number == passes
                base.passes.append(
                    run_module.run_servers(
                        config,
                        db,
                        env,
                        accounts,
                        after=_retention_of(db, env, base) if last else None,
                    )
                )
    finally:
        for base, db, _, _ in prepared:
            if base.size == max(bases) and os.environ.get("BENCH_KEEP_BASE"):
                log(f"base {base.size} kept for EXPLAIN: {db.url} (drop it when done)")
            else:
                database.drop(db)
    text = comparison([base for base, _, _, _ in prepared])
    print(text)
    return text


def prepare_base(config, run_module, size: int) -> tuple[Base, Database, dict[str, str], tuple]:
    """A fresh database of `size` prescriptions, its service environment and accounts."""
    log(f"growth: base of {size} prescriptions")
    db = database.create(config.postgres)
    try:
        secret = run_module.new_secret()
        env = run_module.service_env(db, secret)
        database.prepare(db, env)
        accounts = run_module.make_accounts(db)
        database.create_baseline_table(db)
        key = Settings(database_url=db.url, secret_key=secret).derived_key("ins-pseudonym")
        log(f"base {size}: filling (COPY-free SQL: generate_series)")
        filled = growth_data.fill(db, size, key, World.patients())
    except BaseException:
        database.drop(db)
        raise
    log(
        f"base {size}: {filled.prescriptions} prescriptions, {filled.lines} lines, "
        f"{filled.events} events in {filled.seconds:.0f} s; "
        f"{filled.database_bytes / 2**20:.0f} MiB"
    )
    return Base(size, filled), db, env, accounts


def _retention_of(db: Database, env: dict[str, str], base: Base):
    def after_scenarios(bench) -> None:
        retention(db, env, bench.world, base)

    return after_scenarios


def _passes() -> int:
    """Passes over the bases, alternated (10 k, 10 M, 10 k, 10 M...): each row is judged on
    its median, so that the machine's drift over a run of half an hour falls on both bases."""
    return max(1, int(os.environ.get("BENCH_GROWTH_PASSES", "2")))


def _bases() -> list[int]:
    return [int(value) for value in os.environ["BENCH_BASE"].split(",") if value]


def _by_name(rows: list[Row]) -> dict[str, Row]:
    return {row.scenario: row for row in rows if row.requests}


def comparison(bases: list[Base]) -> str:
    smallest = bases[0]
    names = [s.name for s in SCENARIOS if any(s.name in _by_name(b.rows) for b in bases)]
    header = ["request (c=8)"]
    for base in bases:
        header += [f"{base.size:,} req/s", f"{base.size:,} p50", f"{base.size:,} p99"]
        header += [f"{base.size:,} wrk ms/req", f"{base.size:,} db ms/req"]
    if len(bases) > 1:
        header += ["p50 ×", "p99 ×", f"≤ {P_RATIO_TARGET}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        first = _by_name(smallest.rows).get(name)
        title = first.title if first else name
        cells = [title]
        for base in bases:
            row = _by_name(base.rows).get(name)
            cells += (
                [f"{row.throughput:.0f}", f"{row.p50_ms:.1f}", f"{row.p99_ms:.1f}"]
                + [f"{row.worker_cpu_ms or 0:.2f}", f"{row.db_cpu_ms or 0:.2f}"]
                if row
                else ["-", "-", "-", "-", "-"]
            )
        last = _by_name(bases[-1].rows).get(name)
        if len(bases) > 1 and first and last:
            p50, p99 = last.p50_ms / first.p50_ms, last.p99_ms / first.p99_ms
            ok = p50 <= P_RATIO_TARGET and p99 <= P_RATIO_TARGET
            cells += [f"{p50:.2f}", f"{p99:.2f}", "PASS" if ok else "FAIL"]
        elif len(bases) > 1:
            cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    passes = max(len(base.passes) for base in bases)
    intro = f"Each figure is the median of {passes} passes, alternated over the bases."
    parts = ["## Growth (BENCH_BASE)", "", intro, "", "\n".join(lines), "", _each_pass(bases)]
    parts += [_retention(bases), _disk(bases)]
    return "\n".join(parts)


def _each_pass(bases: list[Base]) -> str:
    """p50 and p99 of every pass, in order: how much of a ratio is the machine's drift."""
    names = [s.name for s in SCENARIOS if any(s.name in _by_name(b.rows) for b in bases)]
    header = ["request: p50 / p99 ms of each pass"] + [f"{base.size:,}" for base in bases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cells = [name]
        for base in bases:
            found = [_by_name(rows).get(name) for rows in base.passes]
            cells.append(", ".join(f"{r.p50_ms:.1f} / {r.p99_ms:.1f}" if r else "-" for r in found))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _retention(bases: list[Base]) -> str:
    lines = [
        "### Retention commands while a laboratory scans (one scan every 20 ms)",
        "",
        "| base | quiet scans: n, p50, max ms |",
        "|---|---|",
    ]
    for base in bases:
        quiet = sorted(base.quiet_scans)
        p50 = load.percentile(quiet, 0.5)
        worst = quiet[-1] if quiet else 0.0
        lines.append(f"| {base.size:,} | {len(quiet)}, {p50:.1f}, {worst:.1f} |")
    lines += [
        "",
        "| command | s | output | scans meanwhile | p50 ms | p99 ms | max ms | "
        f"max − quiet p50 (≤ {SCAN_DELAY_LIMIT_MS:.0f} ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for base in bases:
        quiet_p50 = load.percentile(sorted(base.quiet_scans), 0.5)
        for command in base.commands:
            lines.append(command.summary(quiet_p50).replace("| `epu", f"| {base.size:,}: `epu", 1))
    return "\n".join(lines) + "\n"


def _disk(bases: list[Base]) -> str:
    lines = [
        "### Disk (after the fill, VACUUM ANALYZE; tables with their indexes and TOAST)",
        "",
        "| base | prescriptions | lines | events | fill s | database MiB | MiB per million "
        "prescriptions | largest tables (MiB per million) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for base in bases:
        f = base.filled
        tables = ", ".join(
            f"{name} {f.per_million(size) / 2**20:.0f}"
            for name, size in list(f.bytes_by_table.items())[:4]
        )
        total = sum(f.bytes_by_table.values())
        lines.append(
            f"| {base.size:,} | {f.prescriptions:,} | {f.lines:,} | {f.events:,} | "
            f"{f.seconds:.0f} | {f.database_bytes / 2**20:.0f} | "
            f"{f.per_million(total) / 2**20:.0f} | {tables} |"
        )
    return "\n".join(lines) + "\n"
