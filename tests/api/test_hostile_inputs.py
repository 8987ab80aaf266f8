"""Hostile bodies, queries and headers: a clear 400/401/413/422, never a 500, nothing stored."""

import json

import pytest
from sqlalchemy import func, select

from models import Event, IdempotencyRecord, Line, Prescription
from tests.factories import prescription_body

PROBLEM = "application/problem+json"
FHIR = "application/fhir+json"


def rows(session) -> tuple[int, ...]:
    counts = tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (Prescription, Line, Event, IdempotencyRecord)
    )
    session.rollback()
    return counts


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def with_text(raw_value: str) -> str:
    """A valid prescription whose clinical context is this raw JSON literal."""
    body = json.dumps(prescription_body(clinical_context="PLACEHOLDER"))
    return body.replace('"PLACEHOLDER"', raw_value)


HOSTILE_BODIES = {
    "nested 65 levels": deep(65),
    "nested 100,000 levels": "[" * 100_000 + "]" * 100_000,
    "5,000-digit number": with_text("1" * 5000),
    "5,000-digit float": with_text("0." + "1" * 5000),
    "NaN": with_text("NaN"),
    "Infinity": with_text("-Infinity"),
    "1e400": with_text("1e400"),
    "integer beyond 2^53": with_text(str(2**53 + 1)),
    "NUL in a string": with_text('"a\\u0000b"'),
    "lone surrogate": with_text('"\\ud800"'),
    "lone surrogate in a key": '{"\\udfff": 1}',
    "NUL inside a stored context value": json.dumps(
        prescription_body(
            lines=[{"loinc": "2842-3", "context": [{"code": "8665-2", "value": "x\x00"}]}]
        )
    ),
    "not UTF-8": b'{"clinical_context": "\xff"}',
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_json_on_create_is_a_400_problem_and_stores_nothing(
    http, prescriber, session, name
):
    before = rows(session)
    response = http.post(
        "/api/v1/prescriptions",
        data=HOSTILE_BODIES[name],
        headers={**prescriber.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.data[:300]
    assert response.mimetype == PROBLEM
    assert response.json["code"] == "malformed_json"
    assert response.json["detail"]
    assert rows(session) == before


@pytest.mark.parametrize(
    "name", ["nested 65 levels", "5,000-digit number", "NaN", "lone surrogate"]
)
def test_hostile_json_on_fhir_is_a_400_operation_outcome(http, prescriber, session, name):
    before = rows(session)
    response = http.post(
        "/fhir",
        data=HOSTILE_BODIES[name],
        headers={**prescriber.headers, "Content-Type": FHIR},
    )
    assert response.status_code == 400
    assert response.json["resourceType"] == "OperationOutcome"
    assert response.json["issue"][0]["code"] == "invalid"
    assert rows(session) == before


@pytest.mark.parametrize(
    "path", ["/api/v1/prescriptions", "/api/v1/scans", "/fhir", "/fhir/Task/$take"]
)
def test_without_a_token_a_hostile_or_invalid_body_gets_401_not_field_errors(http, path):
    for body in (deep(100), '{"lines": "nope"}', "not json"):
        response = http.post(path, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, (path, body[:20], response.data[:200])
        assert "WWW-Authenticate" in response.headers


def test_a_depth_of_64_is_still_read(http, prescriber):
    response = http.post(
        "/api/v1/prescriptions",
        data=deep(63),
        headers={**prescriber.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422  # parsed, then refused by the schema (not a 400)


def test_a_long_idempotency_key_is_refused_rather_than_cut(http, prescriber, session):
    before = rows(session)
    response = http.post(
        "/api/v1/prescriptions",
        json=prescription_body(),
        headers={**prescriber.headers, "Idempotency-Key": "k" * 201},
    )
    assert response.status_code == 400
    assert response.json["code"] == "invalid_idempotency_key"
    assert rows(session) == before
    accepted = http.post(
        "/api/v1/prescriptions",
        json=prescription_body(),
        headers={**prescriber.headers, "Idempotency-Key": "k" * 200},
    )
    assert accepted.status_code == 201


def test_nul_in_a_query_parameter_is_a_400(http, prescriber):
    response = http.get("/api/v1/prescriptions?cursor=%00", headers=prescriber.headers)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM


def test_nul_in_the_client_id_at_the_token_endpoint_is_a_400(http):
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "x"},
    )
    assert response.status_code == 400


def test_a_body_over_the_limit_is_413(http, prescriber):
    big = json.dumps(prescription_body(clinical_context="x" * (300 * 1024)))
    response = http.post(
        "/api/v1/prescriptions",
        data=big,
        headers={**prescriber.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def created_code(http, prescriber) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    assert response.status_code == 201
    return response.json["code"]


@pytest.mark.parametrize(
    "query",
    [
        "_count=%C2%B2",  # ² is a digit to str.isdigit, not to int()
        "_lastUpdated=9999-12-31",
        "_lastUpdated=le9999-12-31",
        "_lastUpdated=0001-01-01T00:00:00%2B05:00",
        "_lastUpdated=gt0001-01-01",
        "_cursor=" + "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwx",  # year 1 with an offset
        "_cursor=" + "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
        "_cursor=%FF%FE",
    ],
)
def test_crafted_fhir_search_parameters_are_400_operation_outcomes(http, prescriber, query):
    response = http.get(f"/fhir/ServiceRequest?{query}", headers=prescriber.headers)
    assert response.status_code == 400, response.data[:300]
    assert response.json["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query",
    [
        "updated_since=0001-01-01T00:00:00%2B05:00",
        "updated_since=9999-12-31T23:59:59-05:00",
        "cursor=MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwx",
        "cursor=MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
        "cursor=" + "A" * 199,
        "limit=%C2%B2",
    ],
)
def test_crafted_list_parameters_are_422_problems(http, prescriber, query):
    response = http.get(f"/api/v1/prescriptions?{query}", headers=prescriber.headers)
    assert response.status_code == 422, response.data[:300]
    assert response.mimetype == PROBLEM


def test_an_if_match_of_5000_digits_matches_nothing(http, prescriber, lab):
    code = created_code(http, prescriber)
    assert http.post("/api/v1/scans", json={"code": code}, headers=lab.headers).status_code == 200
    response = http.patch(
        f"/api/v1/prescriptions/{code}",
        json={"changes": [{"op": "add", "line": {"text": "Ferritine"}, "reason": "x"}]},
        headers={**lab.headers, "If-Match": '"v' + "1" * 5000 + '"'},
    )
    assert response.status_code == 412


@pytest.mark.parametrize("size", [(70_000, 1), (1, 70_000)])
def test_a_png_wider_or_taller_than_65535_pixels_is_413(http, lab, size):
    from tests.api.test_image_scans import png_header_only, scan_image

    response = scan_image(http, lab, png_header_only(*size))
    assert response.status_code == 413
    assert response.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("result_return", "field"),
    [
        ({"channels": ["phone"], "phone": "not a phone"}, "result_return.phone"),
        ({"channels": ["phone"], "phone": "06 12 34 56"}, "result_return.phone"),
        ({"channels": ["mssante"] * 4}, "result_return.channels"),
        ({"channels": ["mssante", "mssante"]}, "result_return.channels"),
        ({"copies_to": [{"rpps": "1000568879²"}]}, "result_return.copies_to[0].rpps"),
        ({"copies_to": [{"rpps": "10005688790"}] * 11}, "result_return.copies_to"),
    ],
)
def test_result_return_is_bounded_and_phone_numbers_are_checked(
    http, prescriber, session, result_return, field
):
    before = rows(session)
    response = http.post(
        "/api/v1/prescriptions",
        json=prescription_body(result_return=result_return),
        headers=prescriber.headers,
    )
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert rows(session) == before


@pytest.mark.parametrize("phone", ["06 12 34 56 78", "+33 6 12 34 56 78", "01.23.45.67.89"])
def test_real_phone_numbers_are_accepted(http, prescriber, phone):
    body = prescription_body(result_return={"channels": ["phone"], "phone": phone})
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (
            {"loinc": "2842-3", "context": [{"code": "8665-2", "value": "x" * 201}]},
            "lines[0].context[0].value",
        ),
        (
            {"loinc": "2842-3", "context": [{"code": "8665-2", "value": "2026-01-01"}] * 21},
            "lines[0].context",
        ),
        ({"text": "x", "patient_instructions": ["MED-1165"] * 11}, "lines[0].patient_instructions"),
    ],
)
def test_line_lists_and_strings_are_bounded(http, prescriber, session, line, field):
    before = rows(session)
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(lines=[line]), headers=prescriber.headers
    )
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert rows(session) == before


def test_an_ins_in_other_scripts_digits_is_not_an_ins(http, prescriber, session):
    arabic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "269052A12345688")
    body = prescription_body(patient={"ins": arabic, "sex": "female", "birth_date": "1969-05-01"})
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 422
    assert "patient.ins" in response.json["errors"]


def test_an_invalid_bundle_lists_its_first_100_issues_and_says_so(http, prescriber):
    entry = {
        "resource": {
            "resourceType": "ServiceRequest",
            "status": 12,
            "intent": [],
            "code": {"coding": [{"system": 1, "code": 2}] * 20},
        },
        "request": {"method": "POST", "url": "ServiceRequest"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 90}
    response = http.post("/fhir", json=bundle, headers={**prescriber.headers, "Content-Type": FHIR})
    assert response.status_code == 400
    issues = response.json["issue"]
    assert len(issues) == 101
    assert issues[-1]["severity"] == "information"
    assert "only the first 100" in issues[-1]["diagnostics"]


def test_a_bundle_of_more_than_100_entries_is_refused_before_validation(http, prescriber):
    entry = {"resource": {"resourceType": "ServiceRequest"}, "request": {"method": "POST"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 101}
    response = http.post("/fhir", json=bundle, headers={**prescriber.headers, "Content-Type": FHIR})
    assert response.status_code == 413
    assert response.json["issue"][0]["code"] == "too-costly"


def test_the_openapi_examples_of_the_ins_and_the_code_are_valid_values(http):
    from epu import codes
    from epu.identifiers import is_ins

    document = http.get("/api/openapi.json").json
    schemas = document["components"]["schemas"]
    examples = {
        name: schema["properties"][field]["example"]
        for name, schema in schemas.items()
        for field in ("ins", "code")
        if "example" in schema.get("properties", {}).get(field, {})
    }
    assert is_ins(schemas["PatientIn"]["properties"]["ins"]["example"])
    for name in ("ScanIn", "PrescriptionOut"):
        codes.normalise(examples[name])  # raises on a bad check character
