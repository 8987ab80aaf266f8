"""The load loop: N threads, one keep-alive connection each, bounded in requests AND seconds.

A scenario gives each thread an iterator of Calls (pre-formatted requests); the loop sends
them back to back (closed loop), or at a fixed rate (open loop, for the soak), and records
each latency and status.
"""

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.client import Connection, Response

MAX_THREADS = 256


@dataclass(frozen=True)
class Call:
    """One request to send, what it may answer, and what to do with the answer."""

    payload: bytes
    expected: frozenset[int]
    kind: str = ""
    after: Callable[[Response], None] | None = None


CallSource = Callable[[int], Iterator[Call]]  # thread index -> the calls of that thread


@dataclass
class Sample:
    """What one thread measured."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)  # (kind, status) -> count
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (offset s, latency ms)
    max_lag_ms: float = 0.0
    ran_out: bool = False


@dataclass
class Measurement:
    concurrency: int
    elapsed_s: float
    client_cpu_s: float
    samples: list[Sample]

    @property
    def requests(self) -> int:
        return sum(len(sample.latencies_ms) for sample in self.samples)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latencies(self) -> list[float]:
        return sorted(value for sample in self.samples for value in sample.latencies_ms)

    def statuses(self) -> Counter:
        return sum((sample.statuses for sample in self.samples), Counter())

    def unexpected(self) -> Counter:
        return sum((sample.unexpected for sample in self.samples), Counter())

    @property
    def errors(self) -> int:
        return sum(self.unexpected().values())

    @property
    def ran_out(self) -> bool:
        return any(sample.ran_out for sample in self.samples)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values), max(1, math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Bounds:
    seconds: float
    max_requests: int
    rate_per_s: float | None = None  # None: closed loop, as fast as answers come back
    keep_timeline: bool = False
    # Each thread moves to a new connection after this many requests (0: never). gunicorn keeps
    # a kept-alive connection on the worker that accepted it, and 8 connections opened at once
    # land unevenly (6 on one worker, 1, 1 and none is common): without this, a measure's p50
    # is mostly which split it drew (bench/RESULTS.md). The new connection is opened one
    # request ahead, so that no measured request waits for a worker to accept it.
    reconnect_every: int = 0


def run(
    port: int,
    source: CallSource,
    concurrency: int,
    bounds: Bounds,
) -> Measurement:
    """Run `concurrency` threads against 127.0.0.1:port until either bound is reached."""
    if not 1 <= concurrency <= MAX_THREADS:
        raise ValueError(f"concurrency must be 1 to {MAX_THREADS}")
    samples = [Sample() for _ in range(concurrency)]
    per_thread = max(1, bounds.max_requests // concurrency)
    start_barrier = threading.Barrier(concurrency + 1)
    clock: dict[str, float] = {}
    threads = [
        threading.Thread(
            target=_worker,
            args=(port, source, index, concurrency, samples[index], per_thread, bounds),
            kwargs={"barrier": start_barrier, "clock": clock},
            daemon=True,
        )
        for index in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    cpu_before = time.process_time()
    clock["start"] = time.perf_counter()
    clock["deadline"] = clock["start"] + bounds.seconds
    start_barrier.wait()
    for thread in threads:
        thread.join(bounds.seconds + 60)
    elapsed = time.perf_counter() - clock["start"]
    cpu = time.process_time() - cpu_before
    return Measurement(concurrency, elapsed, cpu, samples)


def _worker(
    port: int,
    source: CallSource,
    index: int,
    concurrency: int,
    sample: Sample,
    quota: int,
    bounds: Bounds,
    *,
    barrier: threading.Barrier,
    clock: dict[str, float],
) -> None:
    connection, spare = Connection(port), None
    calls = source(index)
    interval = concurrency / bounds.rate_per_s if bounds.rate_per_s else 0.0
    barrier.wait()
    start, deadline = clock["start"], clock["deadline"]
    planned = start + interval * index / concurrency  # spread the threads' first sends
    try:
        for sent in range(quota):
            if bounds.reconnect_every:
                connection, spare = _reconnect(
                    port, sent, bounds.reconnect_every, connection, spare
                )
            if interval:
                planned = _wait_until(planned, sample) + interval
            if time.perf_counter() >= deadline:
                break
            call = next(calls, None)
            if call is None:
                sample.ran_out = True
                break
            _send(connection, call, sample, start, bounds.keep_timeline)
    finally:
        connection.close()
        if spare is not None:
            spare.close()


def _reconnect(
    port: int, sent: int, every: int, connection: Connection, spare: Connection | None
) -> tuple[Connection, Connection | None]:
    """Move to the spare connection every `every` requests, and open the next spare the
    request before: by then a worker has accepted it."""
    if spare is not None and sent % every == 0:
        connection.close()
        connection, spare = spare, None
    if sent % every == every - 1:
        spare = Connection(port)
        try:
            spare.open()
        except OSError:
            spare = None  # stay on the current connection
    return connection, spare


def _wait_until(planned: float, sample: Sample) -> float:
    """Sleep until the planned send time; when behind, send at once (and note the lag)."""
    now = time.perf_counter()
    if now < planned:
        time.sleep(planned - now)
        return planned
    sample.max_lag_ms = max(sample.max_lag_ms, (now - planned) * 1000)
    return planned


def _send(connection: Connection, call: Call, sample: Sample, start: float, timeline: bool):
    began = time.perf_counter()
    try:
        response = connection.exchange(call.payload)
        status = response.status
    except OSError:
        response, status = None, 0  # connection refused, reset or timed out
    latency_ms = (time.perf_counter() - began) * 1000
    sample.latencies_ms.append(latency_ms)
    sample.statuses[status] += 1
    if call.kind:
        sample.by_kind.setdefault(call.kind, []).append(latency_ms)
    if timeline:
        sample.timeline.append((began - start, latency_ms))
    if status not in call.expected:
        sample.unexpected[(call.kind, status)] += 1
    elif call.after is not None and response is not None:
        call.after(response)
