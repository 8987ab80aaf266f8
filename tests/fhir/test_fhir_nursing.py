"""FHIR for the patient lookup (POST /fhir/Task/_search) and the nurse's samplings (Specimen,
ServiceRequest.specimen, Task.businessStatus, $record-sampling)."""

from datetime import UTC, datetime

from tests.factories import OTHER_INS, VALID_INS, prescription_body
from tests.fhir.support import RPPS

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
FORM = "application/x-www-form-urlencoded"
SPECIMEN_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0487"
SAMPLING_STATUS = "https://epu.esante.gouv.fr/fhir/CodeSystem/sampling-status"
CONTAINERS = "https://epu.esante.gouv.fr/fhir/StructureDefinition/specimen-container-count"


def create(http, prescriber, ins=VALID_INS) -> str:
    body = prescription_body()
    body["patient"]["ins"] = ins
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 201
    return response.json["code"]


def task_search(fhir, party, query: str = "", **form):
    return fhir.post(
        f"/fhir/Task/_search{query}",
        party,
        data=form,
        headers={"Content-Type": FORM},
    )


def by_patient(fhir, party, system=INS_NIR, ins=VALID_INS, birthdate="1969-05-01", **extra):
    form = {"patient-identifier": f"{system}|{ins}", "patient-birthdate": birthdate, **extra}
    return task_search(fhir, party, **form)


def tasks(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [entry["resource"]["id"] for entry in response.json.get("entry", [])]


def test_task_search_by_patient_is_the_patient_lookup(fhir, http, prescriber, lab, nurse):
    code = create(http, prescriber)
    create(http, prescriber, ins=OTHER_INS)

    found = by_patient(fhir, lab, presence="carte_vitale")
    as_test_identity = by_patient(fhir, nurse, system=INS_NIR_TEST)

    assert tasks(found) == [code] and tasks(as_test_identity) == [code]
    task = found.json["entry"][0]["resource"]
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    looked_up = [e["detail"] for e in history["items"] if e["type"] == "looked_up"]
    assert looked_up == [{"presence": "carte_vitale"}, {"presence": "declared"}]


def test_a_birth_date_mismatch_answers_an_empty_bundle_as_for_nobody(fhir, http, prescriber, lab):
    create(http, prescriber)

    mismatch = by_patient(fhir, lab, birthdate="1969-05-02")
    nobody = by_patient(fhir, lab, ins=OTHER_INS)

    assert tasks(mismatch) == tasks(nobody) == []
    assert mismatch.json["total"] == nobody.json["total"] == 0


def test_task_search_by_patient_refuses_what_it_cannot_apply(fhir, http, prescriber, lab):
    in_url = task_search(fhir, lab, f"?patient-identifier={INS_NIR}|{VALID_INS}")
    no_birthdate = task_search(fhir, lab, **{"patient-identifier": f"{INS_NIR}|{VALID_INS}"})
    nia = by_patient(fhir, lab, system="urn:oid:1.2.250.1.213.1.4.9")
    bad_ins = by_patient(fhir, lab, ins=VALID_INS[:-2] + "00")
    bad_date = by_patient(fhir, lab, birthdate="01/05/1969")
    unknown = by_patient(fhir, lab, name="Dupont")

    for refused in (in_url, no_birthdate, nia, bad_ins, bad_date, unknown):
        assert refused.status_code == 400, refused.json
        assert refused.json["resourceType"] == "OperationOutcome"
    assert VALID_INS not in bad_ins.get_data(as_text=True)
    assert by_patient(fhir, prescriber).status_code == 403


def scan_and_sample(http, nurse, code) -> dict:
    assert (
        http.post("/api/v1/samplings/scan", json={"code": code}, headers=nurse.headers).status_code
        == 200
    )
    created = http.post(
        f"/api/v1/prescriptions/{code}/samplings",
        json={
            "collected_at": datetime.now(UTC).isoformat(),
            "specimens": [
                {"type": "WB", "lines": ["L1"], "count": 1},
                {"type": "SER", "lines": ["L2", "L3"], "count": 2},
            ],
        },
        headers=nurse.headers,
    )
    assert created.status_code == 201, created.json
    return created.json


def test_specimens_are_referenced_from_service_requests_and_readable(
    fhir, http, prescriber, nurse, lab, other_lab
):
    code = create(http, prescriber)
    sampling = scan_and_sample(http, nurse, code)
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)

    line = fhir.get(f"/fhir/ServiceRequest/{code}-L2", lab).json
    (reference,) = line["specimen"]
    specimen = fhir.get(f"/fhir/{reference['reference']}", lab)
    task = fhir.get(f"/fhir/Task/{code}", prescriber).json

    assert reference["reference"] == f"Specimen/{sampling['id']}-2"
    assert specimen.status_code == 200
    body = specimen.json
    assert body["type"]["coding"][0] == {
        "system": SPECIMEN_TYPES,
        "code": "SER",
        "display": "Sérum",
    }
    assert body["collection"]["collectedDateTime"] == sampling["collected_at"]
    assert body["collection"]["collector"]["identifier"] == {
        "system": RPPS,
        "value": nurse.identifier,
    }
    assert [r["reference"] for r in body["request"]] == [
        f"ServiceRequest/{code}-L2",
        f"ServiceRequest/{code}-L3",
    ]
    assert body["extension"] == [{"url": CONTAINERS, "valueUnsignedInt": 2}]
    codings = task["businessStatus"]["coding"]
    assert {"system": SAMPLING_STATUS, "code": "specimen-collected"}.items() <= codings[1].items()
    assert fhir.get(f"/fhir/{reference['reference']}", nurse).status_code == 200
    assert fhir.get(f"/fhir/{reference['reference']}", other_lab).status_code == 404
    assert fhir.get(f"/fhir/Specimen/{sampling['id']}-9", lab).status_code == 404


def test_the_objection_hides_the_collector_from_the_prescriber(fhir, http, prescriber, nurse, lab):
    code = create(http, prescriber)
    sampling = scan_and_sample(http, nurse, code)
    http.post(
        "/api/v1/scans",
        json={"code": code, "patient_objects_to_sharing": True},
        headers=lab.headers,
    )

    seen = fhir.get(f"/fhir/Specimen/{sampling['id']}-1", prescriber)

    assert seen.status_code == 200 and "collector" not in seen.json["collection"]
    assert nurse.identifier not in seen.get_data(as_text=True)


def sampling_parameters(code: str, specimen_type: str = "UR") -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "collected", "valueDateTime": datetime.now(UTC).isoformat()},
            {
                "name": "specimen",
                "resource": {
                    "resourceType": "Specimen",
                    "type": {"coding": [{"system": SPECIMEN_TYPES, "code": specimen_type}]},
                    "request": [{"reference": f"ServiceRequest/{code}-L1"}],
                    "extension": [{"url": CONTAINERS, "valueUnsignedInt": 1}],
                },
            },
            {
                "name": "not-collected",
                "part": [
                    {"name": "line", "valueString": "L3"},
                    {"name": "reason", "valueString": "refus"},
                ],
            },
            {"name": "comment", "valueString": "Urines du matin"},
        ],
    }


def test_a_nurse_records_a_sampling_through_fhir(fhir, http, prescriber, nurse):
    code = create(http, prescriber)
    http.post("/api/v1/samplings/scan", json={"code": code}, headers=nurse.headers)

    recorded = fhir.post(
        f"/fhir/Task/{code}/$record-sampling", nurse, json=sampling_parameters(code)
    )
    wrong_type = fhir.post(
        f"/fhir/Task/{code}/$record-sampling", nurse, json=sampling_parameters(code, "URINE")
    )
    not_scanned = fhir.post(
        f"/fhir/Task/{create(http, prescriber)}/$record-sampling",
        nurse,
        json=sampling_parameters(code),
    )

    assert recorded.status_code == 201, recorded.json
    (entry,) = recorded.json["entry"]
    assert entry["resource"]["type"]["coding"][0]["code"] == "UR"
    read = http.post("/api/v1/samplings/scan", json={"code": code}, headers=nurse.headers).json
    assert read["samplings"][0]["not_collected"] == [{"line": "L3", "reason": "refus"}]
    assert read["samplings"][0]["status"] == "partially_collected"
    assert wrong_type.status_code == 422 and wrong_type.json["resourceType"] == "OperationOutcome"
    assert not_scanned.status_code == 404
    assert (
        fhir.post(
            f"/fhir/Task/{code}/$record-sampling", prescriber, json=sampling_parameters(code)
        ).status_code
        == 403
    )
