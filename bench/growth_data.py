"""The growth mode's data: N prescriptions as a year of national use, made in SQL in minutes.

- patients: 5 million INS pseudonyms (the bench's own 512 patients among them, pseudonymised
  with the service's key, so its creates meet their earlier prescriptions as real ones would);
- prescribers and laboratories: the bench's accounts plus 1 000 and 200 more;
- prescriptions created over the last 400 days: 3 % cancelled, 80 % completed, 2 % in progress,
  the rest active, or expired once past their validity of 365 days (one in ten of those still
  active: what the next `epu expire` finds);
- 1 to 12 lines each (mean ≈ 5), LOINC codes of the catalogue;
- events: created, read (one prescription in two), taken, one line_done per line and completed
  for completed prescriptions, cancelled, expired;
- laid out on disk as a real base is: ids and rows in the order of creation (each chunk of a
  million is the next slice of the 400 days, written oldest first), so that what is old (what
  retention deletes, a prescriber's first page) sits together in old pages. A fill in random
  order scattered every old row over the whole base: the purge then dirtied one page per row
  it deleted and wrote 60 MB of WAL a second, checkpoints every 9 s (2026-12-07).

Columns added later by others are filled from their model defaults (or left to the database's
server default); a NOT NULL column with neither stops the fill with its name.
"""

import time
from dataclasses import dataclass

from sqlalchemy import Table, text

from bench.console import log
from bench.database import Database
from epu.identifiers import ins_pseudonym
from models import Event, Line, Prescription
from models.db import make_engine

PATIENTS = 5_000_000
EXTRA_PRESCRIBERS = 1_000
EXTRA_LABS = 200
DAYS = 400
VALIDITY_DAYS = 365
PURGE_AFTER_DAYS = 390  # closed and untouched for that long: what `epu purge` deletes here
CHUNK = 1_000_000  # prescriptions per transaction

SEED = """
CREATE UNLOGGED TABLE bench_seed AS
SELECT g.i AS i,
       random() AS r,
       :oldest - random() * :slice_days AS age_days,
       floor(random() * :patients)::int AS patient,
       1 + floor(random() * :prescribers)::int AS prescriber_k,
       1 + floor(random() * :labs)::int AS lab_k,
       1 + floor(power(random(), 2) * 12)::int AS line_count
FROM generate_series(1, :count) AS g(i)
"""

# status, created, updated, expires: as a year of use
SHAPE = """
CREATE UNLOGGED TABLE bench_shape AS
SELECT s.*,
       :first_id + row_number() OVER (ORDER BY s.age_days DESC) AS id,
       now() - make_interval(secs => s.age_days * 86400) AS created_at,
       now() - make_interval(secs => s.age_days * 86400) + make_interval(days => :validity)
           AS expires_at,
       CASE WHEN s.r < 0.03 THEN 'cancelled'
            WHEN s.r < 0.83 THEN 'completed'
            WHEN s.r < 0.85 THEN 'in_progress'
            WHEN s.age_days < :validity THEN 'active'
            WHEN s.r < 0.865 THEN 'active'
            ELSE 'expired' END AS status
FROM bench_seed s
"""

PEOPLE = """
CREATE UNLOGGED TABLE bench_people AS
SELECT role, row_number() OVER (PARTITION BY role ORDER BY id) AS k, id, identifier, name
FROM clients
"""

EXTRA_CLIENTS = """
INSERT INTO clients (client_id, secret_hash, role, identifier, name, created_at)
SELECT 'epu-' || :role || '-growth' || g.i, md5(g.i::text) || md5(g.i::text), :role,
       lpad(g.i::text, :width, '9'), 'Growth ' || :role || ' ' || g.i, now()
FROM generate_series(1, :count) AS g(i)
"""


@dataclass(frozen=True)
class Filled:
    prescriptions: int
    lines: int
    events: int
    seconds: float
    bytes_by_table: dict[str, int]
    database_bytes: int

    def per_million(self, size: int) -> float:
        return size * 1_000_000 / max(1, self.prescriptions)


def _updated_at() -> str:
    return (
        "CASE h.status WHEN 'active' THEN h.created_at"
        " WHEN 'expired' THEN h.expires_at"
        " ELSE h.created_at + make_interval(secs => least(h.age_days, 10 * h.r) * 86400) END"
    )


def _defaults(table: Table, given: dict[str, str]) -> tuple[dict[str, str], dict[str, object]]:
    """SQL for the columns the fill does not know: the model's scalar default, bound."""
    values, params = dict(given), {}
    for column in table.columns:
        if column.name in values or column.primary_key:
            continue
        default = column.default
        if default is not None and default.is_scalar:
            params[f"d_{column.name}"] = default.arg
            values[column.name] = f":d_{column.name}"
        elif column.server_default is None and not column.nullable:
            raise RuntimeError(f"growth fill: no value for {table.name}.{column.name}")
    return values, params


def _insert(
    table: Table, given: dict[str, str], source: str, order: str
) -> tuple[str, dict[str, object]]:
    """INSERT … SELECT in `order`: the rows land on disk in that order, as time writes them."""
    values, params = _defaults(table, given)
    names = ", ".join(f'"{name}"' for name in values)
    select_list = ", ".join(values.values())
    sql = f"INSERT INTO {table.name} ({names}) SELECT {select_list} {source} ORDER BY {order}"  # noqa: S608
    return sql, params


PRESCRIPTION_VALUES = {
    "id": "h.id",
    "code": "upper(substr(md5(:salt || h.i::text), 1, 18))",
    "status": "h.status",
    "version": "CASE h.status WHEN 'active' THEN 1 ELSE 3 END",
    "modified": "false",
    "prescriber_id": "p.id",
    "prescriber_rpps": "p.identifier",
    "prescriber_name": "p.name",
    "patient_sex": "CASE WHEN h.patient % 2 = 0 THEN 'female' ELSE 'male' END",
    "patient_birth_date": "date '1930-01-01' + (h.patient % 30000)",
    "ins_pseudonym": (
        "CASE WHEN h.patient < cardinality(CAST(:own AS text[]))"
        " THEN (CAST(:own AS text[]))[h.patient + 1]"
        " ELSE encode(sha256(convert_to('p' || h.patient, 'UTF8')), 'hex') END"
    ),
    "clinical_context": "CASE WHEN h.r < 0.3 THEN 'Bilan de suivi' END",
    "result_return": 'CAST(\'{"channels": ["mssante"]}\' AS json)',
    "lab_id": "CASE WHEN h.status IN ('completed', 'in_progress') THEN l.id END",
    "lab_finess": "CASE WHEN h.status IN ('completed', 'in_progress') THEN l.identifier END",
    "lab_name": "CASE WHEN h.status IN ('completed', 'in_progress') THEN l.name END",
    "sharing_withheld": "false",
    "catalogue_version_id": "(SELECT max(id) FROM catalogue_versions)",
    "created_at": "h.created_at",
    "updated_at": _updated_at(),
    "expires_at": "h.expires_at",
}
PRESCRIPTION_FROM = (
    "FROM bench_shape h"
    " JOIN bench_people p ON p.role = 'prescriber' AND p.k = h.prescriber_k"
    " JOIN bench_people l ON l.role = 'lab' AND l.k = h.lab_k"
)

LINE_VALUES = {
    "prescription_id": "h.id",
    "line_id": "'L' || n.k",
    "position": "n.k",
    "loinc": "c.loinc",
    "label": "c.label",
    "context": "CAST('[]' AS json)",
    "patient_instructions": "CAST('[]' AS json)",
    "status": "CASE h.status WHEN 'completed' THEN 'done' ELSE 'requested' END",
    "origin": "'prescriber'",
}
LINE_FROM = (
    "FROM bench_shape h CROSS JOIN LATERAL generate_series(1, h.line_count) AS n(k)"
    " JOIN (SELECT row_number() OVER (ORDER BY loinc) - 1 AS k, loinc, label FROM"
    "  catalogue_entries WHERE version_id = (SELECT max(id) FROM catalogue_versions)) c"
    " ON c.k = (h.i * 7 + n.k * 13) % (SELECT count(*) FROM catalogue_entries"
    "  WHERE version_id = (SELECT max(id) FROM catalogue_versions))"
)

HELD = "h.status IN ('completed', 'in_progress')"
# (type, actor, when, which prescriptions, one per line?)
EVENTS = [
    ("created", "p", "h.created_at", "true", False),
    ("read", "p", "h.created_at + interval '1 hour'", "h.i % 2 = 0", False),
    (
        "taken",
        "l",
        "h.created_at + interval '1 day'",
        "h.status IN ('completed','in_progress')",
        False,
    ),
    ("line_done", "l", "h.created_at + interval '2 days'", "h.status = 'completed'", True),
    ("completed", "l", "h.created_at + interval '2 days'", "h.status = 'completed'", False),
    ("cancelled", "p", "h.created_at + interval '3 hours'", "h.status = 'cancelled'", False),
    ("expired", "s", "h.expires_at", "h.status = 'expired'", False),
]


def _event_values(kind: str, actor: str, when: str) -> dict[str, str]:
    system = actor == "s"
    values = {}
    if "public_id" in Event.__table__.c:  # issue 13's opaque event ids: random, per event
        values["public_id"] = "substr(md5(random()::text || clock_timestamp()::text), 1, 22)"
    return values | {
        "prescription_id": "h.id",
        "at": when,
        "type": f"'{kind}'",
        "actor_role": "'system'" if system else ("'prescriber'" if actor == "p" else "'lab'"),
        "actor_client_id": "NULL" if system else f"{actor}.id",
        "actor_identifier": "NULL" if system else f"{actor}.identifier",
        "actor_name": "'EPU'" if system else f"{actor}.name",
        "detail": "CAST('{}' AS json)",
    }


def _event_from(condition: str, per_line: bool) -> str:
    lines = " CROSS JOIN LATERAL generate_series(1, h.line_count) AS n(k)" if per_line else ""
    return f"{PRESCRIPTION_FROM}{lines} WHERE {condition}"


def fill(db: Database, count: int, ins_key: bytes, own_ins: list[str]) -> Filled:
    """Add `count` prescriptions, their lines and events, then VACUUM ANALYZE."""
    started = time.monotonic()
    own = [ins_pseudonym(ins, key=ins_key) for ins in own_ins]
    engine = make_engine(db.url, statement_timeout=0)  # a chunk runs for minutes
    with engine.begin() as connection:
        for role, extra, width in (
            ("prescriber", EXTRA_PRESCRIBERS, 11),
            ("lab", EXTRA_LABS, 9),
        ):
            connection.execute(text(EXTRA_CLIENTS), {"role": role, "count": extra, "width": width})
    lines = events = 0
    chunks = -(-count // CHUNK)
    for number, done in enumerate(range(0, count, CHUNK)):
        size = min(CHUNK, count - done)
        days = (DAYS * (chunks - number) / chunks, DAYS / chunks)  # oldest age, slice length
        with engine.begin() as connection:
            chunk_lines, chunk_events = _fill_chunk(connection, size, own, days)
        lines, events = lines + chunk_lines, events + chunk_events
        if count > CHUNK:
            log(f"filled {done + size} of {count} in {time.monotonic() - started:.0f} s")
    engine.dispose()
    vacuum_analyze(db)
    sizes = table_sizes(db)
    return Filled(count, lines, events, time.monotonic() - started, sizes, database_size(db))


def _fill_chunk(
    connection, count: int, own: list[str], days: tuple[float, float]
) -> tuple[int, int]:
    """`count` more prescriptions created in a slice of days (oldest age, length), with their
    lines and events, in the caller's transaction."""
    first_id = connection.execute(
        text("SELECT coalesce(max(id), 0) FROM prescriptions")
    ).scalar_one()
    people = connection.execute(text("SELECT role, count(*) FROM clients GROUP BY role")).all()
    counts = dict(people)
    connection.execute(
        text(SEED),
        {
            "oldest": days[0],
            "slice_days": days[1],
            "patients": PATIENTS,
            "prescribers": counts["prescriber"],
            "labs": counts["lab"],
            "count": count,
        },
    )
    connection.execute(text(SHAPE), {"validity": VALIDITY_DAYS, "first_id": first_id})
    connection.execute(text(PEOPLE))
    for table in ("bench_shape", "bench_people"):  # else the planner guesses nested loops
        connection.execute(text(f"ANALYZE {table}"))
    sql, params = _insert(Prescription.__table__, PRESCRIPTION_VALUES, PRESCRIPTION_FROM, "h.id")
    connection.execute(text(sql), {**params, "salt": f"{time.time_ns()}", "own": own})
    connection.execute(
        text(
            "SELECT setval(pg_get_serial_sequence('prescriptions', 'id'),"
            " (SELECT max(id) FROM prescriptions))"
        )
    )
    sql, params = _insert(Line.__table__, LINE_VALUES, LINE_FROM, "h.id, n.k")
    lines = connection.execute(text(sql), params).rowcount
    events = 0
    for kind, actor, when, condition, per_line in EVENTS:
        sql, params = _insert(
            Event.__table__,
            _event_values(kind, actor, when),
            _event_from(condition, per_line),
            f"{when}, h.id",
        )
        events += connection.execute(text(sql), params).rowcount
    for table in ("bench_seed", "bench_shape", "bench_people"):
        connection.execute(text(f"DROP TABLE {table}"))
    return lines, events


def vacuum_analyze(db: Database) -> None:
    engine = make_engine(db.url, statement_timeout=0, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("VACUUM ANALYZE"))
        # Write the fill back now, not during the first rows measured (at 10 million the bare
        # floor ran 10-35 % slower for minutes after the fill without it).
        connection.execute(text("CHECKPOINT"))
    engine.dispose()


def table_sizes(db: Database) -> dict[str, int]:
    """Bytes of each table of the service with its indexes and TOAST, largest first."""
    engine = make_engine(db.url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class"
                " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                " AND relname NOT IN ('bench_rows', 'alembic_version')"
                " ORDER BY 2 DESC"
            )
        ).all()
    engine.dispose()
    return {name: size for name, size in rows}


def database_size(db: Database) -> int:
    engine = make_engine(db.url)
    with engine.connect() as connection:
        size = connection.execute(text("SELECT pg_database_size(current_database())"))
        value = size.scalar_one()
    engine.dispose()
    return value
