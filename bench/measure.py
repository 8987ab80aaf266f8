"""One measurement: run a call source at one concurrency and turn it into a report Row."""

import os
import time
from dataclasses import dataclass

from bench import load, server
from bench.load import Bounds, CallSource, Measurement
from bench.report import Row
from bench.server import Server

CORES = os.cpu_count() or 1


@dataclass
class CpuMeter:
    """CPU used meanwhile by the gunicorn workers, this database's backends and the machine."""

    server: Server
    database_name: str
    workers: dict[int, float]
    backends: dict[int, float]
    machine: float
    started: float

    @classmethod
    def start(cls, gunicorn: Server, database_name: str) -> "CpuMeter":
        return cls(
            gunicorn,
            database_name,
            _cpu_by_pid(gunicorn.worker_pids()),
            _cpu_by_pid(server.backend_pids(database_name)),
            server.machine_busy_seconds(),
            time.perf_counter(),
        )

    def stop(self) -> tuple[float, float, float, float]:
        """(workers' CPU s, backends' CPU s, machine busy CPU s, wall s)."""
        workers = _delta(self.workers, _cpu_by_pid(self.server.worker_pids()))
        backends = _delta(self.backends, _cpu_by_pid(server.backend_pids(self.database_name)))
        machine = server.machine_busy_seconds() - self.machine
        return workers, backends, machine, time.perf_counter() - self.started


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: server.cpu_seconds([pid]) for pid in pids}


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def measure(
    gunicorn: Server,
    database_name: str,
    source: CallSource,
    concurrency: int,
    bounds: Bounds,
    *,
    name: str,
    title: str,
) -> tuple[Row, Measurement]:
    meter = CpuMeter.start(gunicorn, database_name)
    result = load.run(gunicorn.port, source, concurrency, bounds)
    workers, backends, machine, wall = meter.stop()
    return to_row(result, name, title, workers, backends, machine, wall), result


def to_row(
    result: Measurement,
    name: str,
    title: str,
    workers: float,
    backends: float,
    machine: float,
    wall: float,
) -> Row:
    latencies = result.latencies()
    count = max(result.requests, 1)
    others = max(0.0, machine - workers - backends - result.client_cpu_s)
    return Row(
        scenario=name,
        title=title,
        concurrency=result.concurrency,
        requests=result.requests,
        seconds=round(result.elapsed_s, 3),
        throughput=result.throughput,
        p50_ms=load.percentile(latencies, 0.50),
        p95_ms=load.percentile(latencies, 0.95),
        p99_ms=load.percentile(latencies, 0.99),
        errors=result.errors,
        statuses={str(status): n for status, n in sorted(result.statuses().items())},
        worker_cpu_ms=workers * 1000 / count,
        db_cpu_ms=backends * 1000 / count,
        client_cpu_us=result.client_cpu_s * 1e6 / count,
        noise=others / (wall * CORES) if wall > 0 else 0.0,
        note="codes ran out before the time bound" if result.ran_out else "",
    )


def skipped(name: str, title: str, concurrency: int, why: str) -> Row:
    return Row(
        scenario=name,
        title=title,
        concurrency=concurrency,
        requests=0,
        seconds=0.0,
        throughput=0.0,
        p50_ms=0.0,
        p95_ms=0.0,
        p99_ms=0.0,
        errors=0,
        statuses={},
        worker_cpu_ms=None,
        db_cpu_ms=None,
        client_cpu_us=0.0,
        noise=0.0,
        note=f"skipped: {why}",
    )
