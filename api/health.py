"""Probes. /healthz: the process answers (it never touches the database). /readyz: the
database answers and is migrated, within READY_DEADLINE whatever the network does."""

import threading

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.limits import limits
from migrations import is_at_head

blp = Blueprint("health", __name__)
READY_DEADLINE = 1.5  # seconds


@blp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz():
    engine = current_app.extensions["epu.engine"]
    outcome: dict[str, str] = {}

    def check() -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                connection.rollback()
            outcome["database"] = "at head" if is_at_head(engine) else "behind head"
        except SQLAlchemyError:
            outcome["database"] = "unreachable"

    # In a thread of its own, so that a database that stopped answering makes this answer 503
    # in time instead of hanging with it (the thread ends at the connection's own deadlines).
    probe = threading.Thread(target=check, daemon=True)
    probe.start()
    probe.join(READY_DEADLINE)
    state = outcome.get("database", "not answering")
    if state in ("unreachable", "not answering"):
        return jsonify(status="unavailable", database=state), 503, {"Retry-After": "1"}
    if state == "behind head":
        return jsonify(status="unavailable", database="ok", migrations="behind head"), 503
    return jsonify(status="ok", database="ok", migrations="at head", limits=limits().state)
