"""Every error from /fhir is an OperationOutcome with the matching HTTP status."""

import json

import pytest
from sqlalchemy.exc import OperationalError

from tests.factories import prescription_body
from tests.fhir.support import FHIR, transaction_bundle


def create_json(http, party) -> str:
    return http.post("/api/v1/prescriptions", json=prescription_body(), headers=party.headers).json[
        "code"
    ]


def outcome(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["resourceType"] == "OperationOutcome"
    issue = response.json["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code
    return issue


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer garbage"}, {"Authorization": "Basic abc"}],
)
def test_401_without_a_valid_token(fhir, headers):
    for response in (
        fhir.get("/fhir/Task/01S2TBPZ2JCNZZYGHZ", headers=headers),
        fhir.post("/fhir", json=transaction_bundle(), headers=headers),
    ):
        outcome(response, 401, "login")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_json_apis_tokens_are_the_fhir_tokens(fhir, http, prescriber):
    code = create_json(http, prescriber)
    assert fhir.get(f"/fhir/Task/{code}", prescriber).status_code == 200


def test_403_for_the_wrong_role(fhir, lab):
    issue = outcome(fhir.post("/fhir", lab, json=transaction_bundle()), 403, "forbidden")
    assert "lab" in issue["diagnostics"]


@pytest.mark.parametrize(
    "path", ["/fhir/Patient/1", "/fhir/ServiceRequest/x/_history/1", "/fhir/Task/x/y/z", "/fhir/x"]
)
def test_404_for_what_does_not_exist(fhir, prescriber, path):
    outcome(fhir.get(path, prescriber), 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/fhir/Task/01S2TBPZ2JCNZZYGHZ"),
        ("DELETE", "/fhir/ServiceRequest/01S2TBPZ2JCNZZYGHZ-L1"),
        ("PATCH", "/fhir/ServiceRequest/01S2TBPZ2JCNZZYGHZ-L1"),
        ("POST", "/fhir/ServiceRequest"),
        ("GET", "/fhir"),
        ("OPTIONS", "/fhir/metadata"),
        ("GET", "/fhir/Task/$take"),
    ],
)
def test_405_for_what_is_not_supported(fhir, prescriber, method, path):
    response = fhir.request(method, path, prescriber)
    if path.endswith("$take") and method == "GET":  # read of a Task with that id
        outcome(response, 404, "not-found")
        return
    outcome(response, 405, "not-supported")
    assert method not in response.headers["Allow"]


def test_409_and_410_from_the_domain(fhir, http, prescriber, lab, other_lab):
    code = create_json(http, prescriber)
    take = {"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]}
    assert fhir.post("/fhir/Task/$take", lab, json=take).status_code == 200
    issue = outcome(fhir.post("/fhir/Task/$take", other_lab, json=take), 409, "conflict")
    assert issue["details"]["coding"][0]["code"] == "held_by_another_laboratory"
    cancelled = create_json(http, prescriber)
    http.post(
        f"/api/v1/prescriptions/{cancelled}/cancel",
        json={"reason": "x"},
        headers=prescriber.headers,
    )
    take["parameter"][0]["valueString"] = cancelled
    issue = outcome(fhir.post("/fhir/Task/$take", lab, json=take), 410, "business-rule")
    assert issue["details"]["coding"][0]["code"] == "cancelled"


def test_412_when_the_conditions_match_several_prescriptions(fhir, http, prescriber):
    code = create_json(http, prescriber)
    mine = {"system": "urn:oid:1.2.250.1.999.1", "value": "ORDER-7"}
    assert fhir.post("/fhir", prescriber, json=transaction_bundle(identifier=mine)).status_code
    response = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(identifier=mine),
        headers={"If-None-Exist": f"requisition={code}"},
    )
    outcome(response, 412, "multiple-matches")


def test_415_for_other_media_types_and_json_is_accepted(fhir, prescriber):
    body = '{"resourceType": "Bundle"}'
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = fhir.post("/fhir", prescriber, data=body, headers={"Content-Type": media_type})
        outcome(response, 415, "not-supported")
    plain_json = fhir.post(
        "/fhir",
        prescriber,
        data=json.dumps(transaction_bundle()),
        headers={"Content-Type": "application/json"},
    )
    assert plain_json.status_code == 200


def test_406_for_formats_other_than_json(fhir, prescriber):
    outcome(
        fhir.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}), 406, "not-supported"
    )
    outcome(fhir.get("/fhir/metadata?_format=xml"), 406, "not-supported")
    assert fhir.get("/fhir/metadata?_format=json").status_code == 200
    assert fhir.get("/fhir/metadata", headers={"Accept": "*/*"}).status_code == 200
    assert fhir.get("/fhir/metadata", headers={"Accept": "application/json"}).status_code == 200


def test_413_for_a_body_too_large(fhir, prescriber):
    response = fhir.post(
        "/fhir", prescriber, data="x" * (300 * 1024), headers={"Content-Type": FHIR}
    )
    outcome(response, 413, "too-costly")


def test_422_names_the_place_in_fhir_terms(fhir, prescriber):
    bundle = transaction_bundle()
    bundle["entry"][2]["resource"]["code"]["coding"][0]["code"] = "99999-9"
    issue = outcome(fhir.post("/fhir", prescriber, json=bundle), 422, "invalid")
    assert issue["expression"] == ["Bundle.entry[2].resource.code.coding"]


def test_304_has_no_body(fhir, http, prescriber):
    code = create_json(http, prescriber)
    response = fhir.get(f"/fhir/Task/{code}", prescriber, headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304 and response.get_data() == b""


def test_500_is_logged_and_says_nothing_more(fhir, monkeypatch, caplog):
    from api.fhir import capability

    def broken(base):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(capability, "statement", broken)
    issue = outcome(fhir.get("/fhir/metadata"), 500, "exception")
    assert "secret" not in issue["diagnostics"]
    assert "secret internals" in caplog.text


def test_503_when_the_database_is_busy(fhir, monkeypatch):
    from api.fhir import capability

    def busy(base):
        raise OperationalError("SELECT 1", {}, Exception("locked"))

    monkeypatch.setattr(capability, "statement", busy)
    response = fhir.get("/fhir/metadata")
    outcome(response, 503, "transient")
    assert response.headers["Retry-After"] == "1"


def test_the_rest_of_the_service_keeps_its_problem_json(http, prescriber):
    for path in ("/api/v1/nothing", "/fhirx", "/"):
        response = http.get(path, headers=prescriber.headers)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
    response = http.put("/api/v1/prescriptions", headers=prescriber.headers)
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert http.get("/api/v1/prescriptions").mimetype == "application/problem+json"
