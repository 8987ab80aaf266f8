"""POST /fhir: a transaction Bundle of ServiceRequests creates one prescription."""

from sqlalchemy import func, select

from models import IdempotencyRecord, Prescription
from tests.factories import BLOOD_COUNT, OTHER_INS, PROLACTIN, VALID_INS
from tests.fhir.support import (
    EPU_OID,
    EXT,
    FHIR,
    INS_OID,
    LOINC,
    PRESCRIBER_RPPS,
    RPPS,
    observation,
    patient,
    service_request,
    transaction_bundle,
)


def count(session) -> int:
    return session.scalar(select(func.count()).select_from(Prescription))


def issues(response) -> list[dict]:
    return response.json["issue"]


def test_transaction_creates_one_prescription(fhir, http, prescriber):
    response = fhir.post("/fhir", prescriber, json=transaction_bundle())
    assert response.status_code == 200
    bundle = response.json
    assert bundle["type"] == "transaction-response"
    patient_entry, *lines = bundle["entry"]
    assert patient_entry["response"]["status"] == "200 OK"
    assert patient_entry["response"]["outcome"]["issue"][0]["severity"] == "information"
    code = lines[0]["response"]["location"].removeprefix("ServiceRequest/")[:18]
    for number, entry in enumerate(lines, 1):
        assert entry["response"]["status"] == "201 Created"
        assert entry["response"]["location"] == f"ServiceRequest/{code}-L{number}/_history/1"
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["fullUrl"] == f"http://localhost/fhir/ServiceRequest/{code}-L{number}"
        assert "outcome" not in entry["response"]  # the prolactin line has its context
    stored = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).json
    assert stored["prescriber"]["rpps"] == PRESCRIBER_RPPS
    assert stored["patient"] == {"sex": "female", "birth_date": "1969-05-01", "ins_verified": True}
    assert stored["clinical_context"] == "Asthénie depuis trois mois"
    assert stored["result_return"] == {"channels": ["mssante"], "copies_to": []}
    assert [(line["loinc"], line["text"]) for line in stored["lines"]] == [
        (BLOOD_COUNT, None),
        (PROLACTIN, None),
        (None, "Recherche de cryoglobulines"),
    ]
    assert stored["lines"][1]["context"] == [
        {"code": "8665-2", "label": "Date des dernières règles", "value": "2026-11-02"}
    ]
    assert stored["lines"][1]["patient_instructions"][0]["code"] == "MED-1165"


def test_the_patient_may_be_contained_in_each_service_request(fhir, http, prescriber):
    created = fhir.create(prescriber, transaction_bundle(contained=True))
    entries = created["response"].json["entry"]
    assert [entry["response"]["status"] for entry in entries] == ["201 Created"] * 3
    stored = http.get(f"/api/v1/prescriptions/{created['code']}", headers=prescriber.headers)
    assert stored.json["patient"]["ins_verified"] is True


def test_every_json_api_field_has_its_fhir_place(fhir, http, prescriber):
    line = service_request(
        "2842-3",
        priority="stat",
        note=[{"text": "Patiente sous contraceptif"}],
        patientInstruction="A jeûn\nPrendre RDV au laboratoire",
        extension=[
            {"url": EXT + "ald", "valueBoolean": True},
            {"url": EXT + "prevention", "valueBoolean": True},
            {"url": EXT + "renewals", "valueUnsignedInt": 2},
            {"url": EXT + "sampling-instructions", "valueString": "Tube sec"},
            {"url": EXT + "urgent-reason", "valueString": "suspicion de prolactinome"},
            {"url": EXT + "work-accident", "valueBoolean": True},
            {"url": EXT + "off-nomenclature", "valueBoolean": True},
            {"url": "https://example.org/ignored-extension", "valueString": "ignored"},
            {
                "url": EXT + "result-return",
                "extension": [
                    {"url": "channel", "valueCode": "phone"},
                    {"url": "phone", "valueString": "0491000000"},
                    {
                        "url": "copy-to",
                        "valueReference": {
                            "identifier": {"system": RPPS, "value": "10003092342"},
                            "display": "Dr Martin",
                        },
                    },
                ],
            },
        ],
        requester={"identifier": {"system": RPPS, "value": PRESCRIBER_RPPS}},
        contained=[
            observation("n", "8665-2", valueDateTime="2026-11-02"),
            observation("w", "29463-7", valueQuantity={"value": 61.5, "unit": "kg"}),
            observation("h", "8302-2", valueInteger=170),
            observation("g", "11884-4", valueBoolean=False),
            observation("s", "11884-4", valueString="voir courrier"),
        ],
        supportingInfo=[{"reference": f"#{ident}"} for ident in "nwhgs"],
        category=[{"text": "Biologie"}],
        authoredOn="2026-01-01",
    )
    created = fhir.create(prescriber, transaction_bundle([line], patient(ins=None)))
    stored = http.get(f"/api/v1/prescriptions/{created['code']}", headers=prescriber.headers).json
    line = stored["lines"][0]
    assert line["urgent"] and line["ald"] and line["prevention"]
    assert line["urgent_reason"] == "suspicion de prolactinome"
    assert line["work_accident"] and line["off_nomenclature"] and not line["not_reimbursable"]
    assert line["renewals"] == 2 and line["sampling_instructions"] == "Tube sec"
    assert line["comment"] == "Patiente sous contraceptif"
    assert [item["code"] for item in line["patient_instructions"]] == ["MED-1160", "MED-1161"]
    assert [(item["code"], item["value"]) for item in line["context"]] == [
        ("8665-2", "2026-11-02"),
        ("29463-7", 61.5),
        ("8302-2", 170),
        ("11884-4", False),
        ("11884-4", "voir courrier"),
    ]
    assert stored["result_return"] == {
        "channels": ["phone"],
        "phone": "0491000000",
        "copies_to": [{"rpps": "10003092342", "name": "Dr Martin"}],
    }
    assert stored["patient"]["ins_verified"] is False


def test_warnings_come_back_as_an_operation_outcome_on_their_entry(fhir, prescriber):
    first = fhir.create(prescriber, transaction_bundle([service_request(BLOOD_COUNT)]))
    assert "outcome" not in first["response"].json["entry"][1]["response"]
    bundle = transaction_bundle([service_request(PROLACTIN), service_request(BLOOD_COUNT)])
    entries = fhir.create(prescriber, bundle)["response"].json["entry"]
    (missing,) = entries[1]["response"]["outcome"]["issue"]
    assert missing["severity"] == "warning" and missing["code"] == "incomplete"
    assert missing["details"]["coding"][0]["code"] == "missing_clinical_context"
    assert missing["expression"] == ["Bundle.entry[1].resource"]
    assert "8665-2" in missing["diagnostics"]
    (duplicate,) = entries[2]["response"]["outcome"]["issue"]
    assert duplicate["code"] == "duplicate"
    assert duplicate["details"]["coding"][0]["code"] == "possible_duplicate"
    assert duplicate["expression"] == ["Bundle.entry[2].resource"]


def test_the_json_api_rules_apply_with_fhir_expressions(fhir, session, prescriber):
    bundle = transaction_bundle(
        [
            service_request(BLOOD_COUNT),
            service_request("1234-5"),
            service_request(
                BLOOD_COUNT, extension=[{"url": EXT + "renewals", "valueUnsignedInt": 13}]
            ),
        ],
        patient(ins="269052A12345600"),
    )
    response = fhir.post("/fhir", prescriber, json=bundle)
    assert response.status_code == 422
    found = {issue["expression"][0]: issue for issue in issues(response)}
    assert set(found) == {
        "Bundle.entry[0].resource.identifier",
        "Bundle.entry[2].resource.code.coding",
        f"Bundle.entry[3].resource.extension('{EXT}renewals')",
    }
    assert "free-text" in found["Bundle.entry[2].resource.code.coding"]["diagnostics"]
    assert all(issue["details"]["coding"][0]["code"] == "validation" for issue in issues(response))
    assert count(session) == 0


def test_schema_rules_apply_too(fhir, session, prescriber):
    bundle = transaction_bundle(
        [service_request(text="x" * 501)], patient(birthDate="1969", gender="female")
    )
    response = fhir.post("/fhir", prescriber, json=bundle)
    assert response.status_code == 422
    expressions = {issue["expression"][0] for issue in issues(response)}
    assert expressions == {
        "Bundle.entry[0].resource.birthDate",
        "Bundle.entry[1].resource.code.text",
    }
    assert count(session) == 0


def test_identity_data_and_other_identifiers_are_refused(fhir, session, prescriber):
    named = transaction_bundle(the_patient=patient(name=[{"family": "Dupont"}]))
    response = fhir.post("/fhir", prescriber, json=named)
    assert response.status_code == 422
    assert issues(response)[0]["expression"] == ["Bundle.entry[0].resource.name"]
    assert "anonymous" in issues(response)[0]["diagnostics"]
    ipp = patient(identifier=[{"system": "urn:oid:1.2.3.4", "value": "IPP42"}])
    response = fhir.post("/fhir", prescriber, json=transaction_bundle(the_patient=ipp))
    assert response.status_code == 422
    assert issues(response)[0]["expression"] == ["Bundle.entry[0].resource.identifier[0]"]
    contained = transaction_bundle(the_patient=patient(telecom=[{"value": "x"}]), contained=True)
    response = fhir.post("/fhir", prescriber, json=contained)
    assert response.status_code == 422
    assert issues(response)[0]["expression"] == ["Bundle.entry[0].resource.contained[0].telecom"]
    assert count(session) == 0


def test_what_epu_cannot_store_is_refused_not_dropped(fhir, session, prescriber):
    for field, value in (
        ("doNotPerform", True),
        ("modifierExtension", [{"url": "https://example.org/x", "valueBoolean": True}]),
        ("occurrenceDateTime", "2026-01-01"),
        ("basedOn", [{"reference": "ServiceRequest/1"}]),
    ):
        bundle = transaction_bundle([service_request(BLOOD_COUNT, **{field: value})])
        response = fhir.post("/fhir", prescriber, json=bundle)
        assert response.status_code == 422, field
        assert issues(response)[0]["code"] == "not-supported"
        assert issues(response)[0]["expression"] == [f"Bundle.entry[1].resource.{field}"]
    bad = [
        ({"status": "draft"}, "status"),
        ({"intent": "plan"}, "intent"),
        ({"requester": {"identifier": {"system": RPPS, "value": "10003092342"}}}, "requester"),
        ({"requisition": {"system": EPU_OID, "value": "X"}}, "requisition"),
        ({"identifier": [{"system": EPU_OID, "value": "X"}]}, "identifier[0]"),
        ({"patientInstruction": "Venir en pyjama"}, "patientInstruction"),
        (
            {"reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}]},
            "reasonCode[0]",
        ),
        ({"supportingInfo": [{"reference": "#nothing"}]}, "supportingInfo[0]"),
    ]
    for fields, where in bad:
        bundle = transaction_bundle([service_request(BLOOD_COUNT, **fields)])
        response = fhir.post("/fhir", prescriber, json=bundle)
        assert response.status_code == 422, fields
        assert issues(response)[0]["expression"] == [f"Bundle.entry[1].resource.{where}"], fields
    assert count(session) == 0


def test_invalid_fhir_is_400_with_the_path(fhir, session, prescriber):
    bundle = transaction_bundle([service_request(BLOOD_COUNT, authoredOn="yesterday")])
    response = fhir.post("/fhir", prescriber, json=bundle)
    assert response.status_code == 400
    assert issues(response)[0]["code"] == "structure"
    assert issues(response)[0]["expression"] == ["Bundle.entry[1].resource.authoredOn"]
    for body in (
        {"resourceType": "ServiceRequest"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "NoSuchThing"}}],
        },
    ):
        assert fhir.post("/fhir", prescriber, json=body).status_code == 400
    response = fhir.post("/fhir", prescriber, data="{not json", headers={"Content-Type": FHIR})
    assert response.status_code == 400
    assert count(session) == 0


def test_only_a_transaction_of_service_requests_and_one_patient(fhir, prescriber):
    batch = transaction_bundle(type="batch")
    assert fhir.post("/fhir", prescriber, json=batch).status_code == 422
    only_patient = transaction_bundle([])
    assert fhir.post("/fhir", prescriber, json=only_patient).status_code == 422
    put = transaction_bundle()
    put["entry"][1]["request"] = {"method": "PUT", "url": "ServiceRequest/x"}
    response = fhir.post("/fhir", prescriber, json=put)
    assert response.status_code == 422
    assert issues(response)[0]["expression"] == ["Bundle.entry[1].request"]
    other = transaction_bundle()
    other["entry"].append(
        {
            "resource": observation("o", "8665-2", valueString="x"),
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    assert fhir.post("/fhir", prescriber, json=other).status_code == 422
    two_patients = transaction_bundle()
    two_patients["entry"][2]["resource"]["subject"] = {"reference": "#p"}
    two_patients["entry"][2]["resource"]["contained"] = [{**patient(OTHER_INS), "id": "p"}]
    response = fhir.post("/fhir", prescriber, json=two_patients)
    assert response.status_code == 422
    assert "same patient" in issues(response)[0]["diagnostics"]


def test_laboratories_cannot_create(fhir, lab):
    response = fhir.post("/fhir", lab, json=transaction_bundle())
    assert response.status_code == 403
    assert issues(response)[0]["code"] == "forbidden"


def test_posting_to_the_base_with_a_trailing_slash(fhir, prescriber):
    assert fhir.post("/fhir/", prescriber, json=transaction_bundle()).status_code == 200


def test_idempotency_key_replays_the_first_answer(fhir, session, prescriber):
    headers = {"Idempotency-Key": "retry-1"}
    first = fhir.post("/fhir", prescriber, json=transaction_bundle(), headers=headers)
    again = fhir.post("/fhir", prescriber, json=transaction_bundle(), headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["entry"][1:] == first.json["entry"][1:]
    assert count(session) == 1
    other = transaction_bundle([service_request(BLOOD_COUNT)])
    refused = fhir.post("/fhir", prescriber, json=other, headers=headers)
    assert refused.status_code == 422
    assert issues(refused)[0]["details"]["coding"][0]["code"] == "idempotency_key_reused"
    assert count(session) == 1


def test_idempotency_key_is_shared_with_the_json_api(fhir, http, session, prescriber):
    from tests.factories import prescription_body

    headers = {**prescriber.headers, "Idempotency-Key": "both-apis"}
    by_json = http.post("/api/v1/prescriptions", json=prescription_body(), headers=headers)
    by_fhir = fhir.post(
        "/fhir", prescriber, json=transaction_bundle(), headers={"Idempotency-Key": "both-apis"}
    )
    assert by_fhir.headers["Idempotent-Replayed"] == "true"
    location = by_fhir.json["entry"][1]["response"]["location"]
    assert location == f"ServiceRequest/{by_json.json['code']}-L1/_history/1"
    assert count(session) == 1


def test_if_none_exist_on_the_requisition_answers_the_existing(fhir, session, prescriber):
    code = fhir.create(prescriber)["code"]
    for header in (f"requisition={EPU_OID}|{code}", f"identifier={EPU_OID}|{code}"):
        again = fhir.post(
            "/fhir", prescriber, json=transaction_bundle(), headers={"If-None-Exist": header}
        )
        assert again.status_code == 200
        entries = again.json["entry"][1:]
        assert [e["response"]["status"] for e in entries] == ["200 OK"] * 3
        assert entries[2]["response"]["location"].startswith(f"ServiceRequest/{code}-L3/_history/")
    assert count(session) == 1
    in_entries = transaction_bundle()
    for entry in in_entries["entry"]:
        entry["request"]["ifNoneExist"] = f"requisition={code}"
    assert (
        fhir.post("/fhir", prescriber, json=in_entries).json["entry"][1]["response"]["status"]
        == "200 OK"
    )
    assert count(session) == 1


def test_if_none_exist_on_an_unknown_requisition_creates(
    fhir, session, prescriber, other_prescriber
):
    code = fhir.create(other_prescriber)["code"]  # not visible to prescriber: no match
    response = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),
        headers={"If-None-Exist": f"requisition={EPU_OID}|{code}"},
    )
    assert response.json["entry"][1]["response"]["status"] == "201 Created"
    assert code not in response.json["entry"][1]["response"]["location"]
    assert count(session) == 2


def test_conditional_create_with_one_match_answers_it_and_ignores_the_content(
    fhir, session, prescriber
):
    code = fhir.create(prescriber, transaction_bundle([service_request(BLOOD_COUNT)]))["code"]
    response = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),  # three lines posted, one stored
        headers={"If-None-Exist": f"requisition={code}"},
    )
    assert response.status_code == 200
    locations = [entry["response"]["location"] for entry in response.json["entry"][1:]]
    assert locations == [
        f"ServiceRequest/{code}-L1/_history/1",
        f"Task/{code}/_history/1",
        f"Task/{code}/_history/1",
    ]
    assert count(session) == 1
    unknown = fhir.post(
        "/fhir",
        prescriber,
        json=transaction_bundle(),
        headers={"If-None-Exist": "requisition=01S2TBPZ2JCNZZYGHZ"},
    )
    assert unknown.status_code == 200  # no match: created
    assert unknown.json["entry"][1]["response"]["status"] == "201 Created"
    session.rollback()
    assert count(session) == 2


def test_the_prescriber_softwares_identifier_makes_creation_idempotent(fhir, session, prescriber):
    mine = {"system": "urn:oid:1.2.250.1.999.1", "value": "ORDER-42"}
    by_bundle = transaction_bundle(identifier=mine)
    first = fhir.post("/fhir", prescriber, json=by_bundle)
    assert first.json["entry"][1]["response"]["status"] == "201 Created"
    lines = [service_request(BLOOD_COUNT, identifier=[mine]) for _ in range(1)]
    by_resources = transaction_bundle()
    for entry in by_resources["entry"][1:]:
        entry["resource"]["identifier"] = [mine]
    by_header = {"If-None-Exist": f"identifier={mine['system']}|{mine['value']}"}
    for retry in (
        fhir.post("/fhir", prescriber, json=by_bundle),
        fhir.post("/fhir", prescriber, json=by_resources),
        fhir.post("/fhir", prescriber, json=transaction_bundle(), headers=by_header),
    ):
        assert retry.status_code == 200
        assert [e["response"]["status"] for e in retry.json["entry"][1:]] == ["200 OK"] * 3
        assert (
            retry.json["entry"][1]["response"]["location"]
            == first.json["entry"][1]["response"]["location"]
        )
    assert count(session) == 1
    another = fhir.post("/fhir", prescriber, json=transaction_bundle(lines, identifier=mine))
    assert another.status_code == 200  # another content under the same identifier: the first
    assert (
        another.json["entry"][1]["response"]["location"]
        == (first.json["entry"][1]["response"]["location"])
    )
    assert count(session) == 1
    stored = session.scalar(select(Prescription.order_identifier))
    assert stored == f"{mine['system']}|{mine['value']}"
    assert session.scalars(select(IdempotencyRecord.key)).all() == []
    found = fhir.get(
        f"/fhir/ServiceRequest?requisition={mine['system']}|{mine['value']}", prescriber
    )
    assert len(found.json["entry"]) == 3


def test_conflicting_conditions_are_refused(fhir, prescriber):
    bundle = transaction_bundle(identifier={"system": "urn:x", "value": "1"})
    response = fhir.post(
        "/fhir", prescriber, json=bundle, headers={"If-None-Exist": "identifier=urn:x|2"}
    )
    assert response.status_code == 422
    response = fhir.post(
        "/fhir", prescriber, json=transaction_bundle(), headers={"If-None-Exist": "_id=3"}
    )
    assert response.status_code == 422
    assert issues(response)[0]["code"] == "not-supported"


def test_the_ins_is_pseudonymised_as_in_the_json_api(fhir, http, session, prescriber, lab):
    code = fhir.create(prescriber)["code"]
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    assert VALID_INS not in (stored.ins_pseudonym or "")
    scan = http.post(
        "/api/v1/scans", json={"code": code, "patient_ins": VALID_INS}, headers=lab.headers
    )
    assert scan.json["patient"]["ins_match"] is True
    bundle = transaction_bundle(
        the_patient=patient(identifier=[{"system": INS_OID, "value": VALID_INS}])
    )
    assert fhir.post("/fhir", prescriber, json=bundle).status_code == 200


def test_a_free_text_exam_comes_in_as_loinc_19146_0_with_its_text(fhir, http, prescriber):
    coded = service_request(text="Dosage de la vitamine B8")
    coded["code"] = {
        "coding": [{"system": LOINC, "code": "19146-0"}],
        "text": "Dosage de la vitamine B8",
    }
    created = fhir.create(prescriber, transaction_bundle([coded]))
    stored = http.get(f"/api/v1/prescriptions/{created['code']}", headers=prescriber.headers).json
    assert stored["lines"][0]["loinc"] is None
    assert stored["lines"][0]["text"] == "Dosage de la vitamine B8"


def test_loinc_19146_0_without_a_text_is_refused_where_it_is(fhir, prescriber):
    coded = service_request("19146-0")
    response = fhir.post("/fhir", prescriber, json=transaction_bundle([coded]))
    assert response.status_code == 422
    assert response.json["issue"][0]["expression"] == ["Bundle.entry[1].resource.code.text"]


def test_an_urgent_request_without_its_reason_is_refused_where_it_is(fhir, prescriber):
    urgent = service_request(BLOOD_COUNT, priority="urgent")
    response = fhir.post("/fhir", prescriber, json=transaction_bundle([urgent]))
    assert response.status_code == 422
    [issue] = response.json["issue"]
    assert "urgent_reason" in issue["diagnostics"]
    assert issue["expression"] == [f"Bundle.entry[1].resource.extension('{EXT}urgent-reason')"]
