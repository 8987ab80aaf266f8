"""The benchmark's own PostgreSQL database: created fresh, migrated, loaded, dropped at the end."""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from epu import clients, codes
from epu.actors import PRESCRIBER
from models import Line, Prescription
from models.db import make_engine, make_session_factory

REPO = Path(__file__).resolve().parents[1]
EPU = Path(sys.executable).parent / "epu"
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
BASELINE_ROWS = 10_000


@dataclass(frozen=True)
class Database:
    server: str
    name: str

    @property
    def url(self) -> str:
        return f"{self.server}/{self.name}"


@dataclass(frozen=True)
class Account:
    client_id: str
    secret: str
    role: str
    identifier: str


def _admin(server: str):
    return create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")


def create(server: str = DEFAULT_SERVER) -> Database:
    if "127.0.0.1" not in server and "localhost" not in server:
        raise SystemExit("loopback only: BENCH_POSTGRES must point to 127.0.0.1")
    database = Database(server, f"epu_bench_{secrets.token_hex(4)}")
    admin = _admin(server)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database.name}"'))
    admin.dispose()
    return database


def drop(database: Database) -> None:
    admin = _admin(database.server)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))
    admin.dispose()


def epu_command(database: Database, env: dict[str, str], *args: str) -> None:
    """Run `epu ARGS` against the benchmark's database (as an operator would)."""
    environment = {**os.environ, **env, "EPU_DATABASE_URL": database.url}
    command = [str(EPU), *args]  # our own fixed arguments
    subprocess.run(command, env=environment, cwd=REPO, check=True, capture_output=True)  # noqa: S603


def prepare(database: Database, env: dict[str, str]) -> None:
    epu_command(database, env, "db", "upgrade")
    epu_command(database, env, "catalogue", "load-bundled")


def create_accounts(database: Database, role: str, identifiers: list[str]) -> list[Account]:
    """Client accounts through the domain (epu.clients.create_client), secrets kept in memory."""
    engine = make_engine(database.url)
    factory = make_session_factory(engine)
    accounts = []
    for index, identifier in enumerate(identifiers):
        name = f"Bench {'Dr' if role == PRESCRIBER else 'Laboratoire'} {index}"
        with factory() as session:
            client, secret = clients.create_client(
                session=session, role=role, identifier=identifier, name=name
            )
            accounts.append(Account(client.client_id, secret, role, identifier))
    engine.dispose()
    return accounts


def create_baseline_table(database: Database, rows: int = BASELINE_ROWS) -> None:
    """The bare baseline's table: an id, a short text and a timestamp, pre-filled for reads."""
    engine = make_engine(database.url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE bench_rows (id BIGSERIAL PRIMARY KEY, payload VARCHAR(64) NOT NULL,"
                " created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        )
        connection.execute(
            text(
                "INSERT INTO bench_rows (payload) "
                "SELECT md5(i::text) FROM generate_series(1, :rows) AS i"
            ),
            {"rows": rows},
        )
        connection.execute(text("ANALYZE bench_rows"))
    engine.dispose()


def autovacuum_on(database: Database) -> bool:
    engine = make_engine(database.url)
    with engine.connect() as connection:
        setting = connection.execute(text("SHOW autovacuum")).scalar_one()
    engine.dispose()
    return setting == "on"


def analyze(database: Database) -> None:
    """Fresh planner statistics, as autovacuum would keep them (it may be off on a dev box)."""
    engine = make_engine(database.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
    engine.dispose()


def _names(columns: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in columns)


def clone_prescriptions(database: Database, template_code: str, count: int) -> list[str]:
    """`count` copies of one prescription created through the API (same prescriber, same 8
    lines), each with a new code and a patient pseudonym of its own: active codes to scan,
    made in seconds rather than minutes."""
    new_codes = [codes.generate_code() for _ in range(count)]
    copied = [c.name for c in Prescription.__table__.columns if c.name not in ("id", "code")]
    copied_lines = [c.name for c in Line.__table__.columns if c.name not in ("id",)]
    own = {"ins_pseudonym": "md5(random()::text) || md5(random()::text)"}
    select_list = ", ".join(own.get(name, f'p."{name}"') for name in copied)
    line_list = ", ".join("n.id" if n == "prescription_id" else f'l."{n}"' for n in copied_lines)
    statement = text(  # column names from our own models; values are bound parameters
        f"WITH n AS (INSERT INTO prescriptions (code, {_names(copied)}) "  # noqa: S608
        f"SELECT c.code, {select_list} FROM prescriptions p, "
        "unnest(CAST(:codes AS text[])) AS c(code) "
        "WHERE p.code = :template RETURNING id) "
        f"INSERT INTO prescription_lines ({_names(copied_lines)}) "
        f"SELECT {line_list} FROM n, prescription_lines l "
        "JOIN prescriptions t ON t.id = l.prescription_id AND t.code = :template"
    )
    engine = make_engine(database.url, statement_timeout=0)  # at 10 M, seconds with a cold cache
    with engine.begin() as connection:
        connection.execute(statement, {"codes": new_codes, "template": template_code})
    engine.dispose()
    return new_codes
