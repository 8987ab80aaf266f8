"""The bare baseline: Flask with one INSERT of one row, or one SELECT by primary key, per request.
`POST /create` runs what a create sends to the database and nothing else (a read by key, one
INSERT ... RETURNING, one executemany of a row per line, one more INSERT, in one transaction,
after parsing the same JSON body): the floor of a create on this stack, for `bench.cpu`.

Same engine settings as the service (models.db.make_engine), served by the same gunicorn
settings: what any Flask + SQLAlchemy + PostgreSQL request costs at the least. EPU's figures are
read as ratios of these.

    EPU_DATABASE_URL=postgresql+psycopg://... gunicorn ... bench.baseline:app
"""

import os
import secrets

from flask import Flask, abort, jsonify, request
from sqlalchemy import text

from models.db import make_engine

INSERT = text("INSERT INTO bench_rows (payload) VALUES (:payload) RETURNING id")
SELECT = text("SELECT id, payload, created_at FROM bench_rows WHERE id = :id")
INSERT_MANY = text("INSERT INTO bench_rows (payload) VALUES (:payload)")


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    engine = make_engine(database_url)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.post("/insert")
    def insert():
        with engine.begin() as connection:
            row_id = connection.execute(INSERT, {"payload": secrets.token_hex(16)}).scalar_one()
        return jsonify(id=row_id), 201

    @app.post("/create")
    def create():
        lines = request.get_json()["lines"]
        with engine.begin() as connection:
            connection.execute(SELECT, {"id": len(lines)}).all()
            row_id = connection.execute(INSERT, {"payload": secrets.token_hex(16)}).scalar_one()
            connection.execute(
                INSERT_MANY, [{"payload": f"{row_id}-{n}"} for n in range(len(lines))]
            )
            connection.execute(INSERT, {"payload": f"event {row_id}"})
        return jsonify(id=row_id), 201

    @app.get("/select/<int:row_id>")
    def select(row_id: int):
        with engine.connect() as connection:
            row = connection.execute(SELECT, {"id": row_id}).one_or_none()
            connection.rollback()
        if row is None:
            abort(404)
        return jsonify(id=row.id, payload=row.payload, created_at=row.created_at.isoformat())

    return app


app = create_app(os.environ["EPU_DATABASE_URL"]) if "EPU_DATABASE_URL" in os.environ else None
