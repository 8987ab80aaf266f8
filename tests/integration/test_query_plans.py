"""The statements that must stay cheap as the base grows can use the index meant for them.

Each is explained as the service runs it, its values bound (on PostgreSQL as the generic plan
of a prepared statement, which psycopg makes of any statement run five times), with the index
it would otherwise fall back on dropped in a transaction rolled back: the plan must then name
the index meant for it.
"""

from datetime import date

import pytest
from psycopg.sql import Literal
from sqlalchemy import inspect, select, text
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from epu.lookups import _SERVABLE
from epu.prescriptions import _DUPLICATES
from models import Line
from models.base import utcnow

PSEUDONYM = "a" * 64
FALLBACK = "ix_prescriptions_patient_lookup"
OPEN_PATIENT = "ix_prescriptions_open_patient"


def generic_plan(connection, statement, values: dict) -> str:
    """PostgreSQL's plan for the statement whatever its values: what a prepared one reuses."""
    compiled = statement.compile(dialect=PGDialect_psycopg(paramstyle="numeric_dollar"))
    expanded = compiled.construct_expanded_state(values)
    connection.exec_driver_sql(f"PREPARE explained AS {expanded.statement}")
    connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    driver = connection.connection.dbapi_connection
    arguments = ", ".join(
        Literal(expanded.parameters[name]).as_string(driver) for name in expanded.positiontup
    )
    rows = connection.exec_driver_sql(f"EXPLAIN EXECUTE explained({arguments})").scalars()
    explained = "\n".join(rows)
    connection.exec_driver_sql("DEALLOCATE explained")  # it outlives the transaction
    return explained


def sqlite_plan(connection, statement, values: dict) -> str:
    compiled = statement.compile(dialect=connection.dialect)
    expanded = compiled.construct_expanded_state(values)
    arguments = tuple(expanded.parameters[name] for name in expanded.positiontup)
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {expanded.statement}", arguments)
    return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize(
    ("statement", "values"),
    [
        (
            _SERVABLE,
            {"pseudonym": PSEUDONYM, "birth_date": date(1969, 5, 1), "caller": 1, "param_1": 50},
        ),
        (_DUPLICATES, {"pseudonym": PSEUDONYM, "id": 1, "loincs": ["2951-2", "2823-3"]}),
    ],
    ids=["patient lookup", "duplicate check"],
)
def test_open_prescriptions_of_a_patient_are_read_through_the_partial_index(
    engine, statement, values
):
    values = {**values, "now": utcnow()}
    with engine.connect() as connection, connection.begin():
        connection.execute(text(f"DROP INDEX {FALLBACK}"))
        if connection.dialect.name == "postgresql":
            explained = generic_plan(connection, statement, values)
        else:
            explained = sqlite_plan(connection, statement, values)
        connection.rollback()
    assert OPEN_PATIENT in explained, explained


def test_a_prescriptions_lines_are_read_through_the_unique_index_that_leads_with_it(engine):
    """(prescription, line) is unique and leads with the prescription: it is the lines' only
    index by prescription (a second one was written on every line of every create)."""
    statement = select(Line).where(Line.prescription_id.in_([1, 2]))
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            explained = generic_plan(connection, statement, {})
            unique_index = "uq_prescription_lines_prescription_id"
        else:
            explained = sqlite_plan(connection, statement, {})
            unique_index = "sqlite_autoindex_prescription_lines_1"  # SQLite's name for it
        indexes = inspect(connection).get_indexes("prescription_lines")
        connection.rollback()
    assert unique_index in explained, explained
    by_prescription = [i for i in indexes if i["column_names"][:1] == ["prescription_id"]]
    assert [i["name"] for i in by_prescription if not i["unique"]] == []
