"""Everything EPU defines is published under /fhir: every canonical URL in any answer resolves
(tests/fhir/support.py checks it on every answer); the definitions themselves are valid."""

import pytest
from sqlalchemy import select

from api.fhir import conformance
from api.fhir import systems as s
from models import Event
from tests.factories import prescription_body
from tests.fhir.support import CANONICAL_BASE, canonicals, resources, transaction_bundle


def create_json(http, party) -> str:
    response = http.post("/api/v1/prescriptions", json=prescription_body(), headers=party.headers)
    return response.json["code"]


def definitions() -> list[str]:
    urls = list(conformance.EXTENSIONS)
    urls += list(conformance.CODE_SYSTEMS)
    urls += [url.replace("/CodeSystem/", "/ValueSet/") for url in conformance.CODE_SYSTEMS]
    urls += [f"{s.OPERATION}/{ident}" for ident in conformance.OPERATIONS]
    urls += [f"{s.SEARCH_PARAMETER}/{ident}" for ident in conformance.SEARCH_PARAMETERS]
    return urls


@pytest.mark.parametrize("url", definitions())
def test_every_definition_is_published_and_valid(fhir, url):
    response = fhir.get("/fhir/" + url.removeprefix(CANONICAL_BASE))  # open, like metadata
    assert response.status_code == 200
    assert response.json["url"] == url
    assert response.json["text"]["status"] == "generated"


def test_what_is_not_defined_is_404(fhir):
    for path in ("StructureDefinition/nothing", "CodeSystem/x", "OperationDefinition/Task-x"):
        assert fhir.get(f"/fhir/{path}").status_code == 404


def test_the_capability_statement_names_only_published_definitions(fhir):
    statement = fhir.get("/fhir/metadata").json
    named = canonicals(statement)
    assert f"{s.OPERATION}/Task-take" in named
    for resource in statement["rest"][0]["resource"]:
        for param in resource.get("searchParam", []):
            assert param["definition"].startswith(("http://hl7.org/fhir/", CANONICAL_BASE))


def test_every_recorded_event_type_is_in_the_published_code_system(
    fhir, http, session, prescriber, lab
):
    code = create_json(http, prescriber)
    http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    kinds = set(session.scalars(select(Event.type)))
    assert kinds <= set(conformance.EVENT_TYPES)
    events = resources(fhir.get(f"/fhir/AuditEvent?entity=Task/{code}", prescriber).json)
    assert {e["subtype"][-1]["code"] for e in events} == {"created", "read", "taken", "released"}


def test_audit_event_subtypes_use_the_standard_codes_where_one_fits(fhir, http, prescriber):
    code = create_json(http, prescriber)
    http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
    bundle = fhir.get(f"/fhir/AuditEvent?entity=Task/{code}", prescriber).json
    created, read = resources(bundle)
    assert created["subtype"][0] == {"system": s.RESTFUL_INTERACTION, "code": "create"}
    assert read["subtype"][0] == {"system": s.RESTFUL_INTERACTION, "code": "read"}
    assert created["subtype"][1] == {"system": s.CS_EVENT_TYPE, "code": "created"}


def test_audit_event_full_urls_are_readable(fhir, http, prescriber, other_prescriber):
    code = create_json(http, prescriber)
    bundle = fhir.get(f"/fhir/AuditEvent?entity=Task/{code}", prescriber).json
    for entry in bundle["entry"]:
        path = entry["fullUrl"].removeprefix("http://localhost")
        read = fhir.get(path, prescriber)
        assert read.status_code == 200
        assert read.json == entry["resource"]
        assert fhir.get(path, other_prescriber).status_code == 404
    assert fhir.get(f"/fhir/AuditEvent/{code}-999999", prescriber).status_code == 404


def test_every_issue_code_in_an_outcome_is_published(fhir, http, prescriber):
    bad = transaction_bundle()
    bad["entry"][1]["resource"]["code"] = {"coding": [{"system": s.LOINC, "code": "1-1"}]}
    refused = fhir.post("/fhir", prescriber, json=bad)
    assert refused.status_code == 422
    assert refused.json["issue"][0]["details"]["coding"][0]["system"] == s.CS_ISSUE
