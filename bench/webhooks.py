"""Webhook delivery under load: `epu dispatch` against a local receiver (part of `make bench`).

100 subscribers (a prescriber account each, one subscription each) on the benchmark's
PostgreSQL database. Events are recorded through the domain's audit trail at a steady rate,
round-robin over in-progress prescriptions of those prescribers, exactly as a use case records
them (the outbox row in the event's own transaction); a receiver on loopback notes when each
arrives. Latency runs from the event's commit to the receiver's answer. Knobs:
BENCH_WEBHOOK_RATES (events/s, default "50,500"), BENCH_WEBHOOK_SECONDS (10),
BENCH_WEBHOOK_DISPATCHERS (1), BENCH_WEBHOOK_BACKLOG (5000: then a backlog of that many events
is written with the dispatchers paused, and the time they take to send it gives their own
deliveries/s; 0 to skip).
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import func, select

from bench import bodies
from bench.console import log
from bench.database import Database
from bench.load import percentile
from epu import clients, codes
from epu.actors import PRESCRIBER, Actor
from epu.audit import record
from epu.settings import Settings, WebhookSettings
from epu.webhooks import signing, subscriptions
from models import Event, Prescription, WebhookDelivery
from models.base import utcnow
from models.db import make_engine, make_session_factory, writes

SUBSCRIBERS = 100
PRESCRIPTIONS_PER_SUBSCRIBER = 5
EPU = Path(sys.executable).parent / "epu"
REPO = Path(__file__).resolve().parents[1]
DRAIN_SECONDS = 30
SENDERS = 16  # threads recording events (the use cases' side)
BACKLOG = int(os.environ.get("BENCH_WEBHOOK_BACKLOG", "5000"))
BACKLOG_TARGET = 500.0  # deliveries/s: the dispatcher keeps up with 500 events/s


@dataclass
class Result:
    rate: float
    seconds: float
    events: int
    delivered: int
    achieved_rate: float  # events/s actually committed
    throughput: float  # deliveries/s, from the first commit to the last arrival
    p50_ms: float
    p99_ms: float
    max_ms: float
    backlog_at_end: int  # deliveries still waiting when the load stopped
    drain_s: float  # from the end of the load to the last arrival

    @property
    def kept_up(self) -> bool:
        return self.delivered == self.events and self.backlog_at_end <= self.rate


class Receiver:
    """A loopback HTTP server, in a process of its own, that notes the first arrival of each
    webhook-id. In the bench's process its threads waited for the GIL behind the 16 writers:
    py-spy had the dispatcher's senders blocked in connect() most of the time, so the bench
    measured its own receiver rather than the dispatcher."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "webhook-arrivals.txt"
        self.path.write_text("")
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.process = context.Process(target=_serve, args=(str(self.path), ports), daemon=True)
        self.process.start()
        self.port = ports.get(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def arrived(self) -> dict[str, float]:
        first: dict[str, float] = {}
        with self.path.open() as lines:
            for line in lines:
                webhook_id, _, at = line.rstrip("\n").partition(" ")
                if at:
                    first.setdefault(webhook_id, float(at))
        return first

    def count(self) -> int:
        return len(self.arrived)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


def _serve(path: str, ports) -> None:
    out, lock = open(path, "a", buffering=1), threading.Lock()  # noqa: SIM115 (the process's life)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            with lock:
                out.write(f"{self.headers.get('webhook-id', '')} {now}\n")
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        # Read by the constructor's listen(): set on the instance afterwards, it left the
        # default backlog of 5, and bursts of connections were reset (each a failed delivery
        # and a 5 s retry in the drain).
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    ports.put(server.server_address[1])
    server.serve_forever()


@writes
def _push(*, session, prescription_id: int, actor: Actor) -> tuple[int, float]:
    """One event, recorded as a use case records it; (event id, commit time)."""
    prescription = session.get(Prescription, prescription_id, with_for_update=True)
    record(session, prescription, "modified", actor, {"bench": True})
    session.flush()
    event_id = session.scalar(
        select(func.max(Event.id)).where(Event.prescription_id == prescription_id)
    )
    session.commit()
    return event_id, time.time()


@writes
def _push_many(*, session, targets, first: int, count: int) -> None:
    for index in range(first, first + count):
        prescription_id, actor = targets[index % len(targets)]
        record(session, session.get(Prescription, prescription_id), "modified", actor, {})
    session.commit()


@dataclass
class Drain:
    events: int
    delivered: int
    seconds: float  # from the dispatchers' resumption to the last arrival

    @property
    def rate(self) -> float:
        return self.delivered / max(self.seconds, 1e-9)

    def markdown(self) -> str:
        verdict = "yes" if self.delivered == self.events and self.rate >= BACKLOG_TARGET else "no"
        return (
            f"Backlog drain (the dispatcher's own capacity, without the writers on the same "
            f"cores): {self.events} events recorded while the dispatcher was paused (SIGSTOP), "
            f"then resumed: {self.delivered} delivered in {self.seconds:.1f} s = "
            f"**{self.rate:.0f} deliveries/s** (target ≥ {BACKLOG_TARGET:.0f}: {verdict}).\n"
        )


def _drain(factory, receiver: Receiver, targets, processes, count: int) -> Drain:
    """A backlog written while the dispatchers are stopped, then the time they take to send it:
    what one dispatcher can deliver, apart from what the bench's writers can commit."""
    before = receiver.count()
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        for first in range(0, count, 100):
            with factory() as session:
                _push_many(
                    session=session, targets=targets, first=first, count=min(100, count - first)
                )
    finally:
        resumed = time.time()
        for process in processes:
            process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + DRAIN_SECONDS
    while receiver.count() - before < count and time.monotonic() < deadline:
        time.sleep(0.05)
    arrived = receiver.arrived
    return Drain(count, len(arrived) - before, max(arrived.values(), default=resumed) - resumed)


def _prepare(factory, settings: Settings, url: str) -> list[tuple[int, Actor]]:
    key = signing.encryption_key(settings)
    allowed = WebhookSettings(allow_http=True, allow_private=True)
    targets = []
    for index, rpps in enumerate(bodies.rpps_numbers(SUBSCRIBERS, first=1_000_900_000)):
        with factory() as session:
            client, _ = clients.create_client(
                session=session, role=PRESCRIBER, identifier=rpps, name=f"Webhook {index}"
            )
        actor = Actor(client.id, PRESCRIBER, client.identifier, client.name)
        with factory() as session:
            subscriptions.create(
                session=session,
                actor=actor,
                url=f"{url}/hook/{index}",
                events=["*"],
                description=None,
                settings=allowed,
                key=key,
            )
        with factory() as session:
            now = utcnow()
            rows = [
                Prescription(
                    code=codes.generate_code(),
                    status="in_progress",
                    prescriber_id=client.id,
                    prescriber_rpps=rpps,
                    prescriber_name=client.name,
                    patient_sex="female",
                    patient_birth_date=now.date().replace(year=1970),
                    created_at=now,
                    updated_at=now,
                    expires_at=now + timedelta(days=365),
                )
                for _ in range(PRESCRIPTIONS_PER_SUBSCRIBER)
            ]
            session.add_all(rows)
            session.commit()
            targets += [(row.id, actor) for row in rows]
    return targets


def _pending(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).where(WebhookDelivery.status == "pending"))


def _load(factory, targets, rate: float, seconds: float) -> dict[int, float]:
    committed: dict[int, float] = {}
    lock = threading.Lock()
    total = int(rate * seconds)
    start = time.monotonic()

    def send(index: int) -> None:
        planned = start + index / rate
        delay = planned - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        prescription_id, actor = targets[index % len(targets)]
        with factory() as session:
            event_id, at = _push(session=session, prescription_id=prescription_id, actor=actor)
        with lock:
            committed[event_id] = at

    with ThreadPoolExecutor(SENDERS) as pool:
        for index in range(total):
            pool.submit(send, index)
    return committed


def _measure(factory, receiver: Receiver, targets, rate: float, seconds: float) -> Result:
    before = receiver.count()
    started = time.time()
    committed = _load(factory, targets, rate, seconds)
    load_end = time.time()
    backlog = _pending(factory)
    deadline = time.monotonic() + DRAIN_SECONDS
    while receiver.count() - before < len(committed) and time.monotonic() < deadline:
        time.sleep(0.05)
    arrived = receiver.arrived
    latencies = sorted(
        (arrived[f"evt_{event}"] - at) * 1000
        for event, at in committed.items()
        if f"evt_{event}" in arrived
    )
    last = max((arrived[f"evt_{e}"] for e in committed if f"evt_{e}" in arrived), default=load_end)
    return Result(
        rate=rate,
        seconds=seconds,
        events=len(committed),
        delivered=len(latencies),
        achieved_rate=len(committed) / max(load_end - started, 1e-9),
        throughput=len(latencies) / max(last - started, 1e-9),
        p50_ms=percentile(latencies, 0.50) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99) if latencies else 0.0,
        max_ms=latencies[-1] if latencies else 0.0,
        backlog_at_end=backlog,
        drain_s=max(last - load_end, 0.0),
    )


def _start_dispatchers(db: Database, env: dict[str, str], count: int, out: Path):
    environment = {
        **os.environ,
        **env,
        "EPU_DATABASE_URL": db.url,
        "EPU_WEBHOOK_ALLOW_HTTP": "1",
        "EPU_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    processes = []
    for index in range(count):
        log_file = (out / f"dispatch-{index}.log").open("wb")
        command = [str(EPU), "dispatch"]  # our own fixed arguments
        processes.append(
            subprocess.Popen(  # noqa: S603
                command, env=environment, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT
            )
        )
    return processes


def run(db: Database, env: dict[str, str], out: Path) -> str:
    """Measure, and return the report's Markdown section."""
    rates = [float(r) for r in os.environ.get("BENCH_WEBHOOK_RATES", "50,500").split(",") if r]
    seconds = float(os.environ.get("BENCH_WEBHOOK_SECONDS", "10"))
    dispatchers = int(os.environ.get("BENCH_WEBHOOK_DISPATCHERS", "1"))
    settings = Settings(database_url=db.url, secret_key=env["EPU_SECRET_KEY"])
    engine = make_engine(db.url, pool_size=SENDERS + 2)
    factory = make_session_factory(engine)
    receiver = Receiver(out)
    processes = []
    try:
        log(f"webhooks: {SUBSCRIBERS} subscribers, {dispatchers} dispatcher(s)")
        targets = _prepare(factory, settings, receiver.url)
        processes = _start_dispatchers(db, env, dispatchers, out)
        time.sleep(1.0)
        results = []
        for rate in rates:
            result = _measure(factory, receiver, targets, rate, seconds)
            log(
                f"webhooks {rate:g} events/s: {result.delivered}/{result.events} delivered, "
                f"p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms"
            )
            results.append(result)
        drain = _drain(factory, receiver, targets, processes, BACKLOG) if BACKLOG else None
        if drain:
            log(f"webhooks backlog of {drain.events}: {drain.rate:.0f} deliveries/s")
        load = " ".join(f"{value:.1f}" for value in os.getloadavg())
        text = _markdown(results, dispatchers, seconds) + f"\nLoad average after: {load}.\n"
        return text + ("\n" + drain.markdown() if drain else "")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        receiver.stop()
        engine.dispose()


def _markdown(results: list[Result], dispatchers: int, seconds: float) -> str:
    lines = [
        "## Webhooks: dispatch throughput and commit-to-delivery latency",
        "",
        f"{SUBSCRIBERS} subscribers on loopback, {dispatchers} `epu dispatch` process(es) "
        f"(default settings: 32 workers, 4 per subscription, poll 0.1 s), {seconds:g} s per "
        "rate; each event is one delivery to its prescriber's subscription; latency from the "
        "event's commit to the receiver's answer.",
        "",
        "| events/s asked | committed/s | events | delivered | deliveries/s | p50 ms | p99 ms "
        "| max ms | backlog at end | drain s | keeps up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.rate:g} | {r.achieved_rate:.0f} | {r.events} | {r.delivered} | "
            f"{r.throughput:.0f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.max_ms:.0f} | "
            f"{r.backlog_at_end} | {r.drain_s:.1f} | {'yes' if r.kept_up else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Only this part of the bench: .venv/bin/python -m bench.webhooks"""
    import secrets

    from bench import database

    db = database.create(os.environ.get("BENCH_POSTGRES", database.DEFAULT_SERVER))
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    try:
        env = {
            "EPU_DATABASE_URL": db.url,
            "EPU_SECRET_KEY": secrets.token_urlsafe(32),
            "EPU_INSTANCE_DIR": str(out / "instance"),
        }
        database.prepare(db, env)
        print(run(db, env, out))
    finally:
        database.drop(db)


if __name__ == "__main__":
    main()
