"""What only a real server shows: chunked bodies are counted against the body limit."""

import json

from sqlalchemy import func, select

from models import Prescription
from tests.factories import prescription_body


def chunked(data: bytes, size: int = 8192):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def count(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Prescription))


def test_a_chunked_body_over_256_kib_is_413_and_stores_nothing(server, register, session_factory):
    prescriber = register(server, "prescriber")
    body = json.dumps(prescription_body(clinical_context="x" * 300_000)).encode()
    before = count(session_factory)
    response = server.post(
        "/api/v1/prescriptions",
        data=chunked(body),
        headers={**prescriber.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert count(session_factory) == before


def test_a_chunked_body_under_the_limit_is_read_whole(server, register):
    prescriber = register(server, "prescriber")
    body = json.dumps(prescription_body(clinical_context="x" * 1500)).encode()
    response = server.post(
        "/api/v1/prescriptions",
        data=chunked(body, 100),
        headers={**prescriber.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["clinical_context"] == "x" * 1500
