"""Database round trips per request, scenario by scenario: the service's app in-process (Flask
test client) on the benchmark's database, with SQLAlchemy events counting what reaches it.

Round trips = pre-pings (none: the pool does not ping, models.db) + BEGIN + statements +
COMMIT/ROLLBACK. Checkouts are counted apart: they cost the worker, not the wire.
"""

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import event

from bench import bodies
from bench.database import Account, Database
from epu.settings import Settings

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


@dataclass
class Tally:
    checkouts: int = 0
    pings: int = 0
    begins: int = 0
    ends: int = 0
    statements: list[str] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return self.pings + self.begins + len(self.statements) + self.ends

    def describe(self) -> str:
        return "; ".join(self.statements)


def _short(sql: str) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper()
    table = _TABLE.search(sql)
    rows = sql.count("), (") + 1 if verb == "INSERT" else 0
    return f"{verb} {table[1] if table else ''}".strip() + (f" ×{rows}" if rows > 1 else "")


def _watch(engine, tally: Callable[[], Tally]) -> None:
    def counter(name: str) -> Callable[..., None]:
        def count(*_args) -> None:
            setattr(tally(), name, getattr(tally(), name) + 1)

        return count

    def on_the_wire(name: str) -> Callable[..., None]:
        """BEGIN, COMMIT and ROLLBACK reach the server only outside of autocommit."""
        count = counter(name)

        def maybe(connection, *_args) -> None:
            if not getattr(connection.connection.dbapi_connection, "autocommit", False):
                count()

        return maybe

    event.listen(engine, "checkout", counter("checkouts"))
    if engine.pool._pre_ping:
        event.listen(engine, "checkout", counter("pings"))
    event.listen(engine, "begin", on_the_wire("begins"))
    event.listen(engine, "commit", on_the_wire("ends"))
    event.listen(engine, "rollback", on_the_wire("ends"))

    def before(_conn, _cursor, statement, *_args) -> None:
        tally().statements.append(_short(statement))

    event.listen(engine, "before_cursor_execute", before)


def _token(http, account: Account) -> dict[str, str]:
    basic = base64.b64encode(f"{account.client_id}:{account.secret}".encode()).decode()
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    return {"Authorization": f"Bearer {response.json['access_token']}"}


def round_trips(db: Database, secret: str, prescriber: Account, lab: Account) -> str:
    """A Markdown table: the SQL each scenario's request sends, and its round trips."""
    from api import create_app

    app = create_app(Settings(database_url=db.url, secret_key=secret))
    current = {"tally": Tally()}
    _watch(app.extensions["epu.engine"], lambda: current["tally"])
    http = app.test_client()
    doctor, laboratory = _token(http, prescriber), _token(http, lab)
    body = bodies.prescription("269052A12345688")

    def measure(name: str, send: Callable[[], object]) -> tuple[str, Tally, object]:
        send()  # once to warm the caches (catalogue, token), then counted
        counted = current["tally"] = Tally()
        response = send()
        current["tally"] = Tally()  # what follows is not this request's
        return name, counted, response

    code = http.post("/api/v1/prescriptions", json=body, headers=doctor).json["code"]
    taken = [http.post("/api/v1/prescriptions", json=body, headers=doctor).json["code"]]
    taken.append(http.post("/api/v1/prescriptions", json=body, headers=doctor).json["code"])
    path = f"/api/v1/prescriptions/{code}"
    rows = [
        measure("create", lambda: http.post("/api/v1/prescriptions", json=body, headers=doctor)),
        measure(
            "scan",
            lambda: http.post("/api/v1/scans", json={"code": taken.pop()}, headers=laboratory),
        ),
        measure(
            "status_304",
            lambda: http.get(f"{path}/status", headers={**doctor, "If-None-Match": '"v1"'}),
        ),
        measure("status_200", lambda: http.get(f"{path}/status", headers=doctor)),
        measure("read", lambda: http.get(path, headers=doctor)),
        measure("qr_png", lambda: http.get(f"{path}/qr.png", headers=doctor)),
        measure("catalogue", lambda: http.get("/api/v1/catalogue?q=nfs", headers=doctor)),
    ]
    app.extensions["epu.engine"].dispose()
    lines = [
        "| request | status | round trips | checkouts | pre-pings | BEGIN | statements | end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {response.status_code} | {t.round_trips} | {t.checkouts} | {t.pings} | "
        f"{t.begins} | {t.describe()} | {t.ends} |"
        for name, t, response in rows
    ]
    lines.append(
        "| baseline insert / select | 201 / 200 | 3 | 1 | 0 | 1 | INSERT bench_rows / "
        "SELECT bench_rows | 1 |"
    )
    return "\n".join(lines)
