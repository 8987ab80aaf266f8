"""Property: the families of hostile input, anywhere in a body or a query, on every operation of
/api and /fhir, get a documented refusal (problem+json or OperationOutcome), never a 5xx, and
write nothing."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import Event, IdempotencyRecord, Line, Prescription
from tests.conftest import register
from tests.factories import prescription_body

EXAMPLES = 25
PLACEHOLDER = "__HOSTILE__"
HOSTILE_LITERALS = st.one_of(
    st.integers(min_value=400, max_value=5000).map(lambda n: "9" * n),
    st.integers(min_value=2**53 + 1, max_value=2**63).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" * 40 + ".5"]),
    st.integers(min_value=65, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.text(max_size=20).map(lambda t: json.dumps(t + "\x00")),
    st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b"]).map(lambda s: f'"{s}"'),
)
FHIR_WRITES = [
    "/fhir",
    "/fhir/Task/$take",
    "/fhir/Task/{code}/$take",
    "/fhir/Task/{code}/$release",
    "/fhir/Task/{code}/$complete",
]
BASE_BODIES = {
    "/api/v1/prescriptions": prescription_body(),
    "/api/v1/scans": {"code": "CODE", "patient_ins": "269052A12345688"},
    "/fhir": {"resourceType": "Bundle", "type": "transaction", "entry": []},
}
DEFAULT_BODY = {"reason": "x", "changes": [{"op": "add", "reason": "y"}], "lines": []}


def rows(session_factory) -> tuple[int, ...]:
    with session_factory() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Prescription, Line, Event, IdempotencyRecord)
        )


def paths_in(value, path=()):
    """Every place of a JSON value where another value could stand."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_in(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_in(child, (*path, index))


def placed(body, path):
    if not path:
        return PLACEHOLDER
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = PLACEHOLDER
    return copy


def assert_documented_refusal(response, fhir: bool) -> None:
    assert response.status_code < 500, response.data[:500]
    assert response.status_code in (400, 413), response.data[:500]
    if fhir:
        assert response.json["resourceType"] == "OperationOutcome"
        assert response.json["issue"]
    else:
        assert response.mimetype == "application/problem+json"
        assert {"type", "title", "status", "detail", "code"} <= set(response.json)


@pytest.fixture
def world(app, http, session_factory):
    prescriber = register(http, session_factory, "prescriber", "10005688790", "Dr Fuzz")
    lab = register(http, session_factory, "lab", "130000029", "Laboratoire Fuzz")
    created = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    code = created.json["code"]
    spec = app.extensions["epu.api"].spec.to_dict()
    operations = [
        (method.upper(), path.replace("{code}", code))
        for path, item in spec["paths"].items()
        for method in item
        if method in ("post", "put", "patch")
    ]
    operations += [("POST", path.replace("{code}", code)) for path in FHIR_WRITES]
    reads = [
        path.replace("{code}", code)
        for path, item in spec["paths"].items()
        if "get" in item and "openapi" not in path
    ] + ["/fhir/ServiceRequest", "/fhir/Task", "/fhir/AuditEvent"]
    return {"prescriber": prescriber, "lab": lab, "writes": operations, "reads": reads}


def test_hostile_bodies_on_every_write_operation(http, session_factory, world):
    assert len(world["writes"]) >= 10
    before = rows(session_factory)

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES * len(world["writes"]),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(data):
        method, path = data.draw(st.sampled_from(world["writes"]))
        template = next((b for p, b in BASE_BODIES.items() if path == p), DEFAULT_BODY)
        where = data.draw(st.sampled_from(list(paths_in(template))))
        literal = data.draw(HOSTILE_LITERALS)
        raw = json.dumps(placed(template, where)).replace(f'"{PLACEHOLDER}"', literal)
        party = data.draw(st.sampled_from([world["prescriber"], world["lab"]]))
        fhir = path.startswith("/fhir")
        response = http.open(
            path,
            method=method,
            data=raw.encode("utf-8", "surrogatepass"),
            headers={
                **party.headers,
                "Content-Type": "application/fhir+json" if fhir else "application/json",
                "If-Match": '"v1"',
            },
        )
        assert_documented_refusal(response, fhir)

    run()
    assert rows(session_factory) == before


def test_hostile_query_values_on_every_read_operation(http, session_factory, world):
    names = ["cursor", "updated_since", "limit", "_count", "_lastUpdated", "_cursor", "scale"]
    before = rows(session_factory)

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES * 4,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(data):
        path = data.draw(st.sampled_from(world["reads"]))
        name = data.draw(st.sampled_from(names))
        value = data.draw(
            st.one_of(
                st.sampled_from(
                    ["²", "0001-01-01T00:00:00+05:00", "9999-12-31", "le9999-12-31", "\x00"]
                ),
                st.text(max_size=30),
                st.integers(min_value=2**53).map(str),
            )
        )
        response = http.get(path, query_string={name: value}, headers=world["prescriber"].headers)
        assert response.status_code < 500, (path, name, value, response.data[:300])

    run()
    # reads record "read" events; queries alone must not create prescriptions or lines
    assert rows(session_factory)[:2] == before[:2]
