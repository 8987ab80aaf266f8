from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.limits import limits
from migrations import is_at_head

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz():
    engine = current_app.extensions["epu.engine"]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            connection.rollback()
        at_head = is_at_head(engine)
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    if not at_head:
        return jsonify(status="unavailable", database="ok", migrations="behind head"), 503
    return jsonify(status="ok", database="ok", migrations="at head", limits=limits().state)
