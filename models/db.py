"""Engine and session factory, with the SQLite settings that make it safe under concurrency."""

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_writing: ContextVar[bool] = ContextVar("epu_writing", default=False)
P = ParamSpec("P")
R = TypeVar("R")


def writes(use_case: Callable[P, R]) -> Callable[P, R]:
    """Mark a use case that writes: on SQLite its transactions take the write lock first."""

    @functools.wraps(use_case)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        session = kwargs.get("session")
        if isinstance(session, Session) and _in_autocommit(session):
            session.rollback()  # out of autocommit: a write keeps its transaction
        if isinstance(session, Session) and session.in_transaction() and _is_sqlite(session):
            session.rollback()  # a read transaction begun earlier cannot safely become a writer
        token = _writing.set(True)
        try:
            return use_case(*args, **kwargs)
        finally:
            _writing.reset(token)

    return wrapper


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def read_outside_transaction(session: Session) -> None:
    """For a use case that only reads: on PostgreSQL, the session's statements run each on
    its own (autocommit) until it is rolled back. Under READ COMMITTED every statement has its
    own snapshot anyway, and BEGIN and ROLLBACK were two round trips of a one-row read. A
    @writes use case called next begins its own transaction."""
    session.rollback()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options=_AUTOCOMMIT)


def _in_autocommit(session: Session) -> bool:
    if not session.in_transaction():
        return False
    options = session.connection().get_execution_options()
    return options.get("isolation_level") == _AUTOCOMMIT["isolation_level"]


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


CONNECT_TIMEOUT = 2  # seconds, libpq's minimum
STATEMENT_TIMEOUT = 4.0  # seconds, on the server, and the client's deadline just after it


def make_engine(
    url: str,
    *,
    connect_timeout: int = CONNECT_TIMEOUT,
    statement_timeout: float = STATEMENT_TIMEOUT,
    durable_commits: bool = True,
    **options,
) -> Engine:
    """`durable_commits=False`: PostgreSQL answers a COMMIT before its WAL reaches the disk
    (synchronous_commit off), for work whose last commits may be lost in a crash of the
    server without harm (the dispatcher's leases and outcomes: at worst sent again)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15}, **options)
        _make_sqlite_serialise_writers(engine)
        return engine
    if "poolclass" not in options:
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 10)
        # No pre-ping: on a dead network it would hang before any deadline is armed; a dead
        # connection fails its first statement instead (503) and the pool is refilled.
        options.setdefault("pool_timeout", statement_timeout)
    network = _network_timeouts(connect_timeout, statement_timeout)
    if not durable_commits:
        network["options"] += " -c synchronous_commit=off"
    options["connect_args"] = {**network, **options.get("connect_args", {})}
    engine = create_engine(url, **options)
    if statement_timeout > 0:
        _arm_statement_deadlines(engine, statement_timeout + 0.5)
    return engine


def _network_timeouts(connect_timeout: int, statement_timeout: float) -> dict:
    return {
        "connect_timeout": max(2, connect_timeout),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": int(statement_timeout * 1000),
        "options": f"-c statement_timeout={int(statement_timeout * 1000)}",
    }


def _arm_statement_deadlines(engine: Engine, seconds: float) -> None:
    from models.deadline import watchdog

    @event.listens_for(engine, "before_cursor_execute")
    def arm(conn, cursor, statement, parameters, context, executemany):
        fd = cursor.connection.pgconn.socket
        conn.info.setdefault("epu_deadlines", []).append(watchdog().arm(fd, seconds))

    @event.listens_for(engine, "after_cursor_execute")
    def disarm(conn, cursor, statement, parameters, context, executemany):
        for ticket in conn.info.pop("epu_deadlines", []):
            watchdog().disarm(ticket)

    @event.listens_for(engine, "handle_error")
    def disarm_on_error(context):
        connection = context.connection
        if connection is not None:
            for ticket in connection.info.pop("epu_deadlines", []):
                watchdog().disarm(ticket)


def _make_sqlite_serialise_writers(engine: Engine) -> None:
    # Two "deferred" transactions that both read and then write deadlock, and one fails at
    # once with "database is locked", whatever the timeout. Use cases marked @writes begin
    # with BEGIN IMMEDIATE, which takes the write lock first, so writers queue on the busy
    # timeout; reads stay deferred and never wait (WAL).
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _writing.get() else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
