"""HTTP as FHIR clients rely on it: content negotiation, conditional reads (304, ETag,
Last-Modified, If-None-Match *), vread, If-Match on the Task operations, Prefer return=."""

from email.utils import parsedate_to_datetime

import pytest

from tests.factories import prescription_body
from tests.fhir.support import transaction_bundle


def create_json(http, party) -> str:
    response = http.post("/api/v1/prescriptions", json=prescription_body(), headers=party.headers)
    return response.json["code"]


def parameters(*items) -> dict:
    return {"resourceType": "Parameters", "parameter": list(items)}


def taken(fhir, lab, code) -> str:
    response = fhir.post(
        "/fhir/Task/$take", lab, json=parameters({"name": "code", "valueString": code})
    )
    assert response.status_code == 200
    return response.headers["ETag"]


def done(code: str, line_id: str = "L1") -> dict:
    reference = {"reference": f"ServiceRequest/{code}-{line_id}"}
    return parameters(
        {
            "name": "line",
            "part": [
                {"name": "request", "valueReference": reference},
                {"name": "outcome", "valueCode": "done"},
            ],
        }
    )


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json; fhirVersion=4.0.1",
        'application/fhir+json;fhirVersion="4.0"',
        "application/json+fhir",
        "application/json",
        "text/html, application/fhir+json;q=0.5",
        "*/*",
    ],
)
def test_r4_json_is_accepted_with_or_without_fhir_version(fhir, accept):
    response = fhir.get("/fhir/metadata", headers={"Accept": accept})
    assert response.status_code == 200, accept


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=3.0",
        "application/fhir+json; fhirVersion=5.0",
        "application/fhir+xml",
        "application/fhir+json;q=0",
    ],
)
def test_another_fhir_version_or_format_is_406(fhir, accept):
    response = fhir.get("/fhir/metadata", headers={"Accept": accept})
    assert response.status_code == 406, accept


def test_format_overrides_accept(fhir):
    for fmt in ("json", "application/fhir+json", "application/json"):
        response = fhir.get(
            f"/fhir/metadata?_format={fmt}", headers={"Accept": "application/fhir+xml"}
        )
        assert response.status_code == 200, fmt


def test_legacy_media_type_and_fhir_version_on_input(fhir, prescriber):
    for content_type in ("application/json+fhir", "application/fhir+json; fhirVersion=4.0"):
        response = fhir.post(
            "/fhir", prescriber, json=transaction_bundle(), headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, content_type
    other = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),
        headers={"Content-Type": "application/fhir+json; fhirVersion=5.0"},
    )
    assert other.status_code == 415


def test_304_carries_the_current_etag_and_reads_carry_last_modified(fhir, http, prescriber):
    code = create_json(http, prescriber)
    first = fhir.get(f"/fhir/Task/{code}", prescriber)
    modified = parsedate_to_datetime(first.headers["Last-Modified"])
    assert modified.isoformat()[:19] == first.json["meta"]["lastUpdated"][:19]
    for header in ('W/"1"', '"1"', 'W/"0", W/"1"', "*"):
        again = fhir.get(f"/fhir/Task/{code}", prescriber, headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.headers["ETag"] == 'W/"1"'
    changed = fhir.get(f"/fhir/Task/{code}", prescriber, headers={"If-None-Match": 'W/"0"'})
    assert changed.status_code == 200
    read = fhir.get(f"/fhir/ServiceRequest/{code}-L1", prescriber)
    assert read.headers["ETag"] == 'W/"1"' and "Last-Modified" in read.headers


def test_vread_gives_the_current_version_and_404_for_others(fhir, http, prescriber):
    code = create_json(http, prescriber)
    for path in (f"Task/{code}", f"ServiceRequest/{code}-L2"):
        current = fhir.get(f"/fhir/{path}/_history/1", prescriber)
        assert current.status_code == 200, path
        assert current.json["meta"]["versionId"] == "1"
        older = fhir.get(f"/fhir/{path}/_history/7", prescriber)
        assert older.status_code == 404
    created = fhir.post("/fhir", prescriber, json=transaction_bundle())
    location = created.json["entry"][1]["response"]["location"]
    assert fhir.get(f"/fhir/{location}", prescriber).status_code == 200


def test_if_match_on_task_operations_is_checked_against_the_version(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    stale = fhir.post(f"/fhir/Task/{code}/$take", lab, headers={"If-Match": 'W/"9"'})
    assert stale.status_code == 412
    taken_etag = fhir.post(f"/fhir/Task/{code}/$take", lab, headers={"If-Match": 'W/"1"'})
    assert taken_etag.status_code == 200
    etag = taken_etag.headers["ETag"]
    assert (
        fhir.post(
            f"/fhir/Task/{code}/$complete", lab, json=done(code), headers={"If-Match": 'W/"1"'}
        ).status_code
        == 412
    )
    reported = fhir.post(
        f"/fhir/Task/{code}/$complete", lab, json=done(code), headers={"If-Match": etag}
    )
    assert reported.status_code == 200
    assert (
        fhir.post(f"/fhir/Task/{code}/$release", lab, headers={"If-Match": etag}).status_code == 412
    )
    released = fhir.post(
        f"/fhir/Task/{code}/$release", lab, headers={"If-Match": reported.headers["ETag"]}
    )
    assert released.status_code == 200
    assert released.json["status"] == "requested"


def test_prefer_return_on_operations(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    etag = taken(fhir, lab, code)
    minimal = fhir.post(
        f"/fhir/Task/{code}/$complete", lab, json=done(code), headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 200 and minimal.data == b""
    assert minimal.headers["Preference-Applied"] == "return=minimal"
    assert minimal.headers["ETag"] != etag
    as_outcome = fhir.post(
        f"/fhir/Task/{code}/$release", lab, headers={"Prefer": "RETURN=OperationOutcome"}
    )
    assert as_outcome.json["resourceType"] == "OperationOutcome"
    assert as_outcome.headers["Preference-Applied"] == "return=OperationOutcome"


def test_prefer_return_on_the_transaction(fhir, prescriber):
    plain = fhir.post("/fhir", prescriber, json=transaction_bundle())
    assert all("resource" not in entry for entry in plain.json["entry"])
    full = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),
        headers={"Prefer": "return=representation", "Idempotency-Key": "k-1"},
    )
    assert full.headers["Preference-Applied"] == "return=representation"
    resources = [entry["resource"] for entry in full.json["entry"][1:]]
    assert [r["resourceType"] for r in resources] == ["ServiceRequest"] * 3
    outcomes = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),
        headers={"Prefer": "return=OperationOutcome", "Idempotency-Key": "k-1"},
    )
    for entry in outcomes.json["entry"]:
        assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
