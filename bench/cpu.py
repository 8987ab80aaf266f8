"""Python CPU per request, in-process: steady figures on a busy machine.

    .venv/bin/python -m bench.cpu            (BENCH_CPU_REQUESTS=300 by default)

The service's app and the bare baseline app run under Flask's test client in this one process,
one request at a time, on a fresh PostgreSQL database; the figure is this process's CPU time
(time.process_time) per request, so other processes on the machine barely move it (unlike
req/s). It leaves out gunicorn and PostgreSQL's own CPU: it measures what our Python costs,
which is what the ratios of `make bench` are mostly made of (bench/RESULTS.md). The ratio is
the bare request's CPU divided by the scenario's (1.0: at the floor).
"""

import base64
import itertools
import os
import random
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bodies, database
from bench.database import Account
from epu.actors import LAB, PRESCRIBER
from epu.settings import Settings

REQUESTS = int(os.environ.get("BENCH_CPU_REQUESTS", "200"))
ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "3"))  # the least of the rounds is kept
WARMUP = 30
FHIR = "application/fhir+json"


def _token(http, account: Account) -> dict[str, str]:
    basic = base64.b64encode(f"{account.client_id}:{account.secret}".encode()).decode()
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    return {"Authorization": f"Bearer {response.json['access_token']}"}


def cpu_ms(send: Callable[[int], object], count: int = REQUESTS) -> float:
    for number in range(WARMUP):
        send(number)
    started = time.process_time()
    for number in range(WARMUP, WARMUP + count):
        send(number)
    return (time.process_time() - started) * 1000 / count


def main() -> int:
    from api import create_app
    from bench.baseline import create_app as create_baseline

    db = database.create(os.environ.get("BENCH_POSTGRES", database.DEFAULT_SERVER))
    try:
        secret = secrets.token_urlsafe(32)
        env = {"EPU_SECRET_KEY": secret, "EPU_RATE_LIMIT": "1000000/minute"}
        database.prepare(db, env)
        [doctor_account] = database.create_accounts(db, PRESCRIBER, bodies.rpps_numbers(1))
        [lab_account] = database.create_accounts(db, LAB, bodies.finess_numbers(1))
        database.create_baseline_table(db)
        settings = Settings(
            database_url=db.url,
            secret_key=secret,
            rate_limit="1000000/minute",
            revocation_check_seconds=float(os.environ.get("EPU_REVOCATION_CHECK_SECONDS", 0.5)),
        )
        app = create_app(settings)
        http = app.test_client()
        bare = create_baseline(db.url).test_client()
        doctor, lab = _token(http, doctor_account), _token(http, lab_account)
        rng = random.Random(7)
        patients = [bodies.random_ins(rng) for _ in range(64)]
        json_bodies = [bodies.prescription(ins) for ins in patients]
        fhir_bodies = [bodies.fhir_transaction(ins) for ins in patients]
        own = [
            http.post("/api/v1/prescriptions", json=body, headers=doctor).json["code"]
            for body in json_bodies[:10]
        ]
        to_scan = iter(
            http.post("/api/v1/prescriptions", json=json_bodies[n % 64], headers=doctor).json[
                "code"
            ]
            for n in itertools.count()
        )
        fhir_headers = {**doctor, "Accept": FHIR}
        cases: list[tuple[str, str, Callable[[int], object]]] = [
            (
                "create, 5 lines",
                "insert",
                lambda n: http.post(
                    "/api/v1/prescriptions", json=json_bodies[n % 64], headers=doctor
                ),
            ),
            (
                "FHIR transaction",
                "insert",
                lambda n: http.post(
                    "/fhir",
                    json=fhir_bodies[n % 64],
                    headers={**fhir_headers, "Content-Type": FHIR},
                ),
            ),
            (
                "status 304",
                "select",
                lambda n: http.get(
                    f"/api/v1/prescriptions/{own[n % 10]}/status",
                    headers={**doctor, "If-None-Match": '"v1"'},
                ),
            ),
            (
                "full read",
                "select",
                lambda n: http.get(f"/api/v1/prescriptions/{own[n % 10]}", headers=doctor),
            ),
            (
                "FHIR read",
                "select",
                lambda n: http.get(f"/fhir/ServiceRequest/{own[n % 10]}-L1", headers=fhir_headers),
            ),
            (
                "FHIR requisition search",
                "select",
                lambda n: http.get(
                    f"/fhir/ServiceRequest?requisition={own[n % 10]}", headers=fhir_headers
                ),
            ),
        ]
        floors = {
            "insert": cpu_ms(lambda n: bare.post("/insert")),
            "create": cpu_ms(lambda n: bare.post("/create", json=json_bodies[n % 64])),
            "select": cpu_ms(lambda n: bare.get(f"/select/{n % 1000 + 1}")),
        }
        scans = [next(to_scan) for _ in range(REQUESTS + WARMUP)]
        rows = [(name, kind, cpu_ms(send)) for name, kind, send in cases]
        rows.append(
            (
                "scan",
                "select",
                cpu_ms(lambda n: http.post("/api/v1/scans", json={"code": scans[n]}, headers=lab)),
            )
        )
        print(f"Python CPU per request, in-process, least of {ROUNDS} rounds of {REQUESTS} (ms)")
        print(f"{'request':28} {'ms':>6} {'bare':>6} {'ratio':>6}")
        for kind, value in floors.items():
            print(f"{'bare ' + kind:28} {value:6.2f}")
        for name, kind, value in rows:
            print(f"{name:28} {value:6.2f} {floors[kind]:6.2f} {floors[kind] / value:6.2f}")
        print("against the bare create (a create's statements, nothing else):")
        for name, kind, value in rows:
            if kind == "insert":
                floor = floors["create"]
                print(f"{name:28} {value:6.2f} {floor:6.2f} {floor / value:6.2f}")
        app.extensions["epu.engine"].dispose()
        return 0
    finally:
        database.drop(db)


if __name__ == "__main__":
    sys.exit(main())
