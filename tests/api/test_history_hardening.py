"""The history: paged, with opaque ids, repeated reads counted in one event, a laboratory
seeing only its own executions; and "not yours" running the same statements as "no such"."""

import json

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from epu.audit import RepeatedReads, record
from epu.codes import check_character
from epu.prescriptions import _POLL_ROW, ReadMemory
from models import Event, Prescription
from models.db import read_outside_transaction, writes
from tests.factories import prescription_body

UNKNOWN = "01S2TBPZ2JCNZZYGH" + check_character("01S2TBPZ2JCNZZYGH")


def create(http, prescriber) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    assert response.status_code == 201
    return response.json["code"]


def history(http, party, code, **query):
    response = http.get(
        f"/api/v1/prescriptions/{code}/history", query_string=query, headers=party.headers
    )
    assert response.status_code == 200, response.json
    return response.json


def test_the_history_is_paged_with_opaque_ids(http, session, prescriber):
    code = create(http, prescriber)
    prescription = session.scalar(select(Prescription).where(Prescription.code == code))
    for n in range(249):
        record(session, prescription, "released", None, {"n": n})
    session.commit()
    seen, cursor, pages = [], None, 0
    while True:
        page = history(http, prescriber, code, limit=100, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 250
    assert [item.get("detail", {}).get("n") for item in seen[1:]] == list(range(249))
    ids = [item["id"] for item in seen]
    assert len(set(ids)) == 250
    integer_ids = {str(pk) for pk in session.scalars(select(Event.id))}
    assert not integer_ids & set(ids)  # nothing of the global sequence shows
    assert all(isinstance(i, str) and len(i) == 22 for i in ids)


@pytest.mark.parametrize("cursor", ["nope", "0" * 22, "1"])
def test_a_crafted_history_cursor_is_422(http, prescriber, cursor):
    code = create(http, prescriber)
    response = http.get(
        f"/api/v1/prescriptions/{code}/history?cursor={cursor}", headers=prescriber.headers
    )
    assert response.status_code == 422


def test_repeated_reads_by_one_party_are_one_event_with_a_count(http, prescriber, lab):
    code = create(http, prescriber)
    for _ in range(5):
        assert (
            http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).status_code == 200
        )
    assert http.post("/api/v1/scans", json={"code": code}, headers=lab.headers).status_code == 200
    for _ in range(3):
        http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers)
    reads = [item for item in history(http, prescriber, code)["items"] if item["type"] == "read"]
    assert [(r["actor"]["role"], r["detail"].get("count", 1)) for r in reads] == [
        ("prescriber", 5),
        ("lab", 3),
    ]


def test_a_repeated_read_writes_nothing_until_its_count_is_due(http, app, prescriber, monkeypatch):
    repeats = RepeatedReads(3600)
    monkeypatch.setitem(app.extensions, "epu.read_memory", ReadMemory(repeats))
    code = create(http, prescriber)
    path = f"/api/v1/prescriptions/{code}"
    assert http.get(path, headers=prescriber.headers).status_code == 200  # the first is written
    statements: list[str] = []
    engine = app.extensions["epu.engine"]
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(4):
            assert http.get(path, headers=prescriber.headers).status_code == 200
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert writes == []
    assert [r.get("count", 1) for r in read_details(http, prescriber, code)] == [1]
    repeats.flush_seconds = 0  # the interval has passed: the next read writes the count
    assert http.get(path, headers=prescriber.headers).status_code == 200
    assert [r["count"] for r in read_details(http, prescriber, code)] == [6]


def test_the_counts_due_are_written_by_the_next_read_of_any_prescription(
    http, app, prescriber, monkeypatch
):
    repeats = RepeatedReads(3600)
    monkeypatch.setitem(app.extensions, "epu.read_memory", ReadMemory(repeats))
    first, other = create(http, prescriber), create(http, prescriber)
    for _ in range(3):
        read = http.get(f"/api/v1/prescriptions/{first}", headers=prescriber.headers)
        assert read.status_code == 200
    repeats.flush_seconds = 0  # the interval has passed; nobody reads `first` again
    read = http.get(f"/api/v1/prescriptions/{other}", headers=prescriber.headers)
    assert read.status_code == 200
    assert [r["count"] for r in read_details(http, prescriber, first)] == [3]


def test_a_repeated_read_of_an_unchanged_version_is_one_row_and_a_change_shows_at_once(
    http, app, prescriber, lab, monkeypatch
):
    monkeypatch.setitem(app.extensions, "epu.read_memory", ReadMemory(RepeatedReads(3600)))
    code = create(http, prescriber)
    path = f"/api/v1/prescriptions/{code}"
    first = http.get(path, headers=prescriber.headers)
    statements: list[str] = []
    engine = app.extensions["epu.engine"]
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        again = http.get(path, headers=prescriber.headers)
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert again.json == first.json and again.headers["ETag"] == first.headers["ETag"]
    queries = [s for s in statements if "prescriptions" in s or "prescription_lines" in s]
    assert len(queries) == 1, queries  # the poll's row: the view of that version is kept
    assert http.post("/api/v1/scans", json={"code": code}, headers=lab.headers).status_code == 200
    taken = http.get(path, headers=prescriber.headers).json
    assert taken["status"] == "in_progress" and taken["version"] == first.json["version"] + 1
    assert http.get(path, headers=lab.headers).json["status"] == "in_progress"
    polled = http.get(f"{path}/status", headers=prescriber.headers).json
    assert polled == http.get(f"{path}/status", headers=prescriber.headers).json
    assert polled["status"] == "in_progress" and polled["version"] == taken["version"]


def test_a_poll_and_a_read_take_their_row_outside_of_a_transaction_on_postgresql(
    http, app, prescriber
):
    engine = app.extensions["epu.engine"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps its transactions (its writers queue on BEGIN IMMEDIATE)")
    code = create(http, prescriber)
    path = f"/api/v1/prescriptions/{code}"
    http.get(path, headers=prescriber.headers)
    seen: list[tuple[str, bool]] = []

    def listener(_conn, cursor, statement, *_args) -> None:
        seen.append((statement, cursor.connection.autocommit))

    app.extensions["epu.client_cache"]._checked_at = float("-inf")  # its revocation check too
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        current = http.get(f"{path}/status", headers=prescriber.headers)
        etag = current.headers["ETag"]
        unchanged = http.get(
            f"{path}/status", headers={**prescriber.headers, "If-None-Match": etag}
        )
        again = http.get(path, headers=prescriber.headers)
        listed = http.get("/api/v1/prescriptions", headers=prescriber.headers)
        page = http.get(
            "/fhir/ServiceRequest?_count=2",
            headers={**prescriber.headers, "Accept": "application/fhir+json"},
        )
        reads = len(seen)
        cancelled = http.post(
            f"{path}/cancel", json={"reason": "erreur"}, headers=prescriber.headers
        )
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert (current.status_code, unchanged.status_code, again.status_code) == (200, 304, 200)
    assert listed.status_code == 200 and page.status_code == 200
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    in_transaction = [
        statement[:90]
        for statement, autocommit in seen[:reads]
        if not autocommit and "events" not in statement  # the audit's writes keep theirs
    ]
    assert in_transaction == [], in_transaction  # lists and pages read outside too
    poll_row = str(_POLL_ROW.compile(dialect=engine.dialect))
    rows = [autocommit for statement, autocommit in seen if statement == poll_row]
    assert rows[:3] == [True, True, True], seen  # no BEGIN, no ROLLBACK around the poll's row
    writes = [
        autocommit for statement, autocommit in seen if statement.startswith(("UPDATE", "INSERT"))
    ]
    assert writes and not any(writes), seen  # the writes that follow keep their transaction


def test_a_write_called_after_a_read_outside_of_a_transaction_begins_its_own(session):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite keeps its transactions")

    @writes
    def write(*, session) -> bool:
        session.execute(select(Prescription.id).limit(1))
        return session.connection().connection.dbapi_connection.autocommit

    read_outside_transaction(session)
    session.execute(select(Prescription.id).limit(1))  # a read left without its rollback
    assert write(session=session) is False


def read_details(http, party, code) -> list[dict]:
    return [i["detail"] for i in history(http, party, code)["items"] if i["type"] == "read"]


def execution(http, lab, code, reason, **scan):
    taken = http.post("/api/v1/scans", json={"code": code, **scan}, headers=lab.headers)
    assert taken.status_code == 200, taken.json
    changed = http.patch(
        f"/api/v1/prescriptions/{code}",
        json={"changes": [{"op": "add", "line": {"text": f"Exam {reason}"}, "reason": reason}]},
        headers={**lab.headers, "If-Match": taken.headers["ETag"]},
    )
    assert changed.status_code in (200, 202), changed.json  # applied, or proposed


def test_a_laboratory_sees_only_its_own_execution(http, prescriber, lab, other_lab):
    code = create(http, prescriber)
    execution(http, lab, code, "first-lab-reason")
    assert (
        http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers).status_code == 200
    )
    execution(http, other_lab, code, "second-lab-secret")
    lines = http.get(f"/api/v1/prescriptions/{code}", headers=other_lab.headers).json["lines"]
    outcomes = [
        {"line_id": line["id"], "outcome": "done"}
        for line in lines
        if line["status"] == "requested"
    ]
    finished = http.post(
        f"/api/v1/prescriptions/{code}/done", json={"lines": outcomes}, headers=other_lab.headers
    )
    assert finished.status_code == 200, finished.json
    first = history(http, lab, code)["items"]
    text = json.dumps(first)
    assert "first-lab-reason" in text
    assert "second-lab-secret" not in text
    assert {item["type"] for item in first if item["actor"]["role"] == "lab"} >= {"taken"}
    others = [
        item
        for item in first
        if item["actor"]["role"] == "lab" and item["actor"]["identifier"] is None
    ]
    assert [item["type"] for item in others] == ["completed"]  # status only
    assert "second-lab-secret" in json.dumps(history(http, other_lab, code)["items"])


def test_an_objection_at_a_later_laboratory_hides_its_execution_completely(
    http, prescriber, lab, other_lab
):
    code = create(http, prescriber)
    execution(http, lab, code, "first-lab-reason")
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    execution(http, other_lab, code, "second-lab-secret", patient_objects_to_sharing=True)
    first = history(http, lab, code)["items"]
    assert all(
        item["actor"]["role"] != "lab" or item["actor"]["identifier"] == lab.identifier
        for item in first
    )
    assert "second-lab-secret" not in json.dumps(first)


class Statements:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        sa_event.listen(self.engine, "before_cursor_execute", self._seen)
        return self.seen

    def __exit__(self, *exc):
        sa_event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement, *_args):
        self.seen.append(statement)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/prescriptions/{code}",
        "/api/v1/prescriptions/{code}/status",
        "/api/v1/prescriptions/{code}/history",
        "/api/v1/prescriptions/{code}/ordonnance.pdf",
        "/fhir/ServiceRequest/{code}-L1",
        "/fhir/Task/{code}",
    ],
)
@pytest.mark.parametrize("caller", ["other_prescriber", "lab"])
def test_not_yours_runs_exactly_the_statements_of_does_not_exist(
    http, app, request, prescriber, path, caller, monkeypatch
):
    from api.auth import ClientCache

    # the revocation count, read every 0.5 s, must not fall in one of the two requests only
    monkeypatch.setitem(app.extensions, "epu.client_cache", ClientCache(3600))
    party = request.getfixturevalue(caller)
    code = create(http, prescriber)
    engine = app.extensions["epu.engine"]
    http.get(path.format(code=UNKNOWN), headers=party.headers)  # warm the caller's caches
    with Statements(engine) as not_yours:
        refused = http.get(path.format(code=code), headers=party.headers)
    with Statements(engine) as unknown:
        missing = http.get(path.format(code=UNKNOWN), headers=party.headers)
    assert refused.status_code == missing.status_code == 404
    assert refused.data == missing.data
    assert not_yours == unknown
