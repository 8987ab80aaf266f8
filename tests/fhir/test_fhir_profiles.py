"""French profiles: INS identifiers as FR Core Patient INS says (NIA refused), meta.profile only
where the resource conforms, the free-text exam as LOINC 19146-0, a generated narrative."""

import pytest

from api.fhir.systems import FREE_TEXT_DISPLAY
from tests.factories import VALID_INS, prescription_body
from tests.fhir.support import LOINC, patient, resources, service_request, transaction_bundle

FR_CORE_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
INS_TYPES = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"


def ins(system: str, use: str | None = "official", kind: str = "INS-NIR") -> dict:
    identifier = {
        "system": f"urn:oid:1.2.250.1.213.1.4.{system}",
        "value": VALID_INS,
        "type": {"coding": [{"system": INS_TYPES, "code": kind}]},
    }
    if use:
        identifier["use"] = use
    return identifier


@pytest.mark.parametrize(
    ("system", "kind"), [("8", "INS-NIR"), ("10", "INS-NIR-TEST"), ("11", "INS-NIR-DEMO")]
)
def test_ins_identifiers_as_fr_core_patient_ins_says(fhir, prescriber, system, kind):
    the_patient = patient(ins=None, identifier=[ins(system, kind=kind)])
    response = fhir.post("/fhir", prescriber, json=transaction_bundle(the_patient=the_patient))
    assert response.status_code == 200, response.json


def test_an_nia_is_refused_clearly(fhir, prescriber):
    the_patient = patient(ins=None, identifier=[ins("9", use="temp", kind="INS-NIA")])
    response = fhir.post("/fhir", prescriber, json=transaction_bundle(the_patient=the_patient))
    assert response.status_code == 422
    assert "INS-NIA" in response.json["issue"][0]["diagnostics"]
    assert response.json["issue"][0]["expression"] == ["Bundle.entry[0].resource.identifier[0]"]


def test_an_ins_that_is_not_official_is_refused(fhir, prescriber):
    the_patient = patient(ins=None, identifier=[ins("8", use="old")])
    response = fhir.post("/fhir", prescriber, json=transaction_bundle(the_patient=the_patient))
    assert response.status_code == 422


def test_profiles_are_declared_only_where_the_resource_conforms(fhir, prescriber):
    created = fhir.create(prescriber)["code"]
    found = resources(fhir.get(f"/fhir/ServiceRequest?requisition={created}", prescriber).json)
    for resource in found:
        assert "profile" not in resource["meta"]  # FR Core ServiceRequest needs two notes
        contained = resource["contained"][0]
        assert contained["meta"]["profile"] == [FR_CORE_PATIENT]
    task = fhir.get(f"/fhir/Task/{created}", prescriber).json
    assert "profile" not in task["meta"]


def test_the_free_text_exam_is_loinc_19146_0_with_its_text(fhir, http, prescriber):
    code = fhir.create(prescriber)["code"]
    free = fhir.get(f"/fhir/ServiceRequest/{code}-L3", prescriber).json
    assert free["code"]["coding"] == [
        {"system": LOINC, "code": "19146-0", "display": FREE_TEXT_DISPLAY}
    ]
    assert free["code"]["text"] == "Recherche de cryoglobulines"
    posted = service_request(text="Recherche de cryoglobulines")
    posted["code"]["coding"] = [{"system": LOINC, "code": "19146-0"}]
    again = fhir.create(prescriber, transaction_bundle([posted]))["code"]
    stored = http.get(f"/api/v1/prescriptions/{again}", headers=prescriber.headers).json
    assert stored["lines"][0]["text"] == "Recherche de cryoglobulines"
    assert stored["lines"][0]["loinc"] is None


def test_every_resource_carries_a_generated_narrative(fhir, http, prescriber):
    body = prescription_body()
    code = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers).json["code"]
    read = fhir.get(f"/fhir/ServiceRequest/{code}-L1", prescriber).json
    assert read["text"]["status"] == "generated"
    assert "Numération" in read["text"]["div"] and "57022-6" in read["text"]["div"]
    assert "text" not in read["contained"][0]  # contained resources carry none (dom-4)
    task = fhir.get(f"/fhir/Task/{code}", prescriber).json
    assert task["text"]["status"] == "generated" and code in task["text"]["div"]
    events = resources(fhir.get(f"/fhir/AuditEvent?entity=Task/{code}", prescriber).json)
    assert all(event["text"]["status"] == "generated" for event in events)
    assert "<script" not in read["text"]["div"]
