"""The patient lookup (POST /api/v1/patient-lookups) on PostgreSQL with 100,000+ prescriptions.

    .venv/bin/python -m bench.lookup        (BENCH_LOOKUP_ROWS, BENCH_SECONDS, BENCH_CONCURRENCY)

A fresh database gets BENCH_PATIENTS prescriptions created through the API for known patients,
then copies of one of them (each with a patient pseudonym of its own) up to BENCH_LOOKUP_ROWS;
the service is then asked, at each concurrency, for a known patient (one match), a birth date
that does not match, and an INS with no prescription, in turn. Prints the rows and writes
bench/out/lookup.md.
"""

import os
import random
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench import bodies, database, load, server
from bench.client import call, json_bytes, request_bytes
from bench.console import log
from bench.load import Bounds, Call
from bench.measure import measure
from bench.scenarios import OK, Party, get_token
from epu.actors import LAB, PRESCRIBER
from models.db import make_engine

OUT = Path(__file__).resolve().parent / "out"
LOOKUP = "/api/v1/patient-lookups"


def _bodies(patients: list[str], rng: random.Random) -> list[bytes]:
    """One in three: a known patient; a known INS with another birth date; an unknown INS."""
    known = [{"ins": ins, "birth_date": "1969-05-01"} for ins in patients]
    wrong_date = [{"ins": ins, "birth_date": "1969-05-02"} for ins in patients]
    unknown = [{"ins": bodies.random_ins(rng), "birth_date": "1969-05-01"} for _ in patients]
    mixed = [item for triple in zip(known, wrong_date, unknown, strict=True) for item in triple]
    return [json_bytes({**item, "presence": "carte_vitale"}) for item in mixed]


def _lookups(port: int, labs: list[Party], payloads: list[bytes]):
    def source(thread: int) -> Iterator[Call]:
        lab = labs[thread % len(labs)]
        requests = [
            request_bytes("POST", LOOKUP, port=port, headers=lab.auth, body=body)
            for body in payloads
        ]
        index = thread * 7
        while True:
            yield Call(requests[index % len(requests)], OK, "lookup")
            index += 1

    return source


def _plan(db: database.Database, ins_pseudonym: str) -> str:
    engine = make_engine(db.url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "EXPLAIN SELECT * FROM prescriptions WHERE ins_pseudonym = :p"
                " AND patient_birth_date = DATE '1969-05-01'"
                " AND (status = 'active' OR status = 'in_progress')"
            ),
            {"p": ins_pseudonym},
        )
        plan = "\n".join(row[0] for row in rows)
    engine.dispose()
    return plan


def main() -> None:
    rows_wanted = int(os.environ.get("BENCH_LOOKUP_ROWS", "100000"))
    patients_count = int(os.environ.get("BENCH_PATIENTS", "200"))
    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    concurrencies = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8").split(",")]
    rng = random.Random(11)
    OUT.mkdir(exist_ok=True)
    db = database.create(os.environ.get("BENCH_POSTGRES", database.DEFAULT_SERVER))
    gunicorn = None
    try:
        env = {
            "EPU_DATABASE_URL": db.url,
            "EPU_SECRET_KEY": secrets.token_urlsafe(32),
            "EPU_RATE_LIMIT": "1000000/minute",
            "EPU_LOOKUP_LIMIT": "1000000",
            "EPU_INSTANCE_DIR": str(OUT / "instance"),
        }
        database.prepare(db, env)
        prescriber = database.create_accounts(db, PRESCRIBER, bodies.rpps_numbers(1))[0]
        lab_accounts = database.create_accounts(db, LAB, bodies.finess_numbers(8))
        gunicorn = server.start("wsgi:app", server.GunicornSettings(4, 2), env, OUT, "lookup-bench")
        port = gunicorn.port
        author = Party(prescriber, get_token(port, prescriber))
        labs = [Party(account, get_token(port, account)) for account in lab_accounts]
        patients = [bodies.random_ins(rng) for _ in range(patients_count)]
        log(f"creating {patients_count} prescriptions through the API")
        template = None
        for ins in patients:
            created = call(
                port,
                "POST",
                "/api/v1/prescriptions",
                headers=author.auth,
                body=json_bytes(bodies.prescription(ins)),
            )
            assert created.status == 201, created.body[:300]
            template = template or created.json()["code"]
        log(f"copying one of them up to {rows_wanted} prescriptions")
        database.clone_prescriptions(db, template, max(0, rows_wanted - patients_count))
        database.analyze(db)
        payloads = _bodies(patients, rng)
        source = _lookups(port, labs, payloads)
        lines = [
            f"# Patient lookup, {rows_wanted} prescriptions on PostgreSQL "
            f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, gunicorn 4x2)",
            "",
            "| concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | wrk ms/req "
            "| db ms/req | noise | statuses |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for concurrency in concurrencies:
            load.run(port, source, concurrency, Bounds(seconds=1, max_requests=10_000))
            row, _ = measure(
                gunicorn,
                db.name,
                source,
                concurrency,
                Bounds(seconds=seconds, max_requests=200_000),
                name="lookup",
                title="patient lookup",
            )
            lines.append(
                f"| {concurrency} | {row.requests} | {row.throughput:.0f} | {row.p50_ms:.1f} "
                f"| {row.p95_ms:.1f} | {row.p99_ms:.1f} | {row.worker_cpu_ms:.2f} "
                f"| {row.db_cpu_ms:.2f} | {row.noise:.0%} | {row.statuses} |"
            )
        pseudonym = "0" * 64
        lines += ["", "Plan of the lookup's query:", "", "```", _plan(db, pseudonym), "```"]
        report = "\n".join(lines)
        print(report)
        (OUT / "lookup.md").write_text(report + "\n")
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        database.drop(db)


if __name__ == "__main__":
    main()
