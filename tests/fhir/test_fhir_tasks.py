"""The Task: read and poll, search, and the laboratory's operations $take, $release, $complete."""

import dataclasses
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import func, select

from api.limits import Limits
from epu.codes import generate_code
from models import Event, Prescription
from models.base import utcnow
from tests.factories import OTHER_INS, VALID_INS, prescription_body
from tests.fhir.support import EPU_OID, EXT, FINESS, INS_OID, resources


def create_json(http, party, **overrides) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(**overrides), headers=party.headers
    )
    return response.json["code"]


def parameters(*items) -> dict:
    return {"resourceType": "Parameters", "parameter": list(items)}


def take(fhir, lab, code, *extra):
    body = parameters({"name": "code", "valueString": code}, *extra)
    return fhir.post("/fhir/Task/$take", lab, json=body)


def line(code, line_id, outcome, reason=None) -> dict:
    parts = [
        {"name": "request", "valueReference": {"reference": f"ServiceRequest/{code}-{line_id}"}},
        {"name": "outcome", "valueCode": outcome},
    ]
    if reason is not None:
        parts.append({"name": "reason", "valueString": reason})
    return {"name": "line", "part": parts}


def complete(fhir, lab, code, *lines):
    return fhir.post(f"/fhir/Task/{code}/$complete", lab, json=parameters(*lines))


def test_task_read_with_etag_and_304_while_unchanged(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    response = fhir.get(f"/fhir/Task/{code}", prescriber)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    task = response.json
    assert task["id"] == code and task["status"] == "requested" and task["intent"] == "order"
    assert task["groupIdentifier"] == {"system": EPU_OID, "value": code}
    assert task["focus"] == {"reference": f"ServiceRequest/{code}-L1"}
    assert [ref["reference"] for ref in task["basedOn"]] == [
        f"ServiceRequest/{code}-L{n}" for n in (1, 2, 3)
    ]
    assert task["businessStatus"]["coding"][0]["code"] == "active"
    assert "owner" not in task
    unchanged = fhir.get(f"/fhir/Task/{code}", prescriber, headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == 'W/"1"'
    take(fhir, lab, code)
    changed = fhir.get(f"/fhir/Task/{code}", prescriber, headers={"If-None-Match": 'W/"1"'})
    assert changed.status_code == 200 and changed.headers["ETag"] == 'W/"2"'
    assert changed.json["status"] == "in-progress"
    assert changed.json["owner"]["identifier"] == {"system": FINESS, "value": "130000029"}


def test_task_search_by_group_identifier(fhir, http, prescriber, other_prescriber):
    code = create_json(http, prescriber)
    for value in (code, quote(f"{EPU_OID}|{code}")):
        found = fhir.get(f"/fhir/Task?group-identifier={value}", prescriber).json
        assert [task["id"] for task in resources(found)] == [code]
        assert found["total"] == 1
    for party, value in (
        (other_prescriber, code),
        (prescriber, f"urn:x|{code}"),
        (prescriber, "garbage"),
    ):
        found = fhir.get(f"/fhir/Task?group-identifier={value}", party).json
        assert resources(found) == [] and found["total"] == 0
    assert fhir.get("/fhir/Task", prescriber).status_code == 400
    other = create_json(http, prescriber)
    both = fhir.get(f"/fhir/Task?_id={code},{other}&_count=1", prescriber).json
    assert len(resources(both)) == 1 and both["total"] == 2
    next_url = next(link["url"] for link in both["link"] if link["relation"] == "next")
    rest = fhir.get(next_url.removeprefix("http://localhost"), prescriber).json
    assert {t["id"] for t in resources(both) + resources(rest)} == {code, other}


def test_task_visibility_is_the_json_apis(fhir, http, prescriber, other_prescriber, lab):
    code = create_json(http, prescriber)
    for party, task_id in (
        (other_prescriber, code),
        (lab, code),
        (prescriber, generate_code()),
        (prescriber, "garbage"),
    ):
        response = fhir.get(f"/fhir/Task/{task_id}", party)
        assert response.status_code == 404
        assert response.json["issue"][0]["code"] == "not-found"


def test_take_on_the_type_with_the_code_as_scanned(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    typed = " ".join(code[i : i + 4] for i in range(0, 18, 4)).lower()
    response = take(
        fhir,
        lab,
        typed,
        {"name": "patient-ins", "valueIdentifier": {"system": INS_OID, "value": VALID_INS}},
    )
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"'
    (returned, ins_match) = response.json["parameter"]
    assert returned["name"] == "return" and returned["resource"]["status"] == "in-progress"
    assert ins_match == {"name": "ins-match", "valueBoolean": True}
    again = take(fhir, lab, code)  # idempotent for the holder
    assert again.status_code == 200 and again.headers["ETag"] == 'W/"2"'
    assert [p["name"] for p in again.json["parameter"]] == ["return"]
    by_identifier = fhir.post(
        "/fhir/Task/$take",
        lab,
        json=parameters({"name": "code", "valueIdentifier": {"system": EPU_OID, "value": code}}),
    )
    assert by_identifier.status_code == 200


def test_take_on_a_task_and_the_patients_objection(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    response = fhir.post(
        f"/fhir/Task/{code}/$take",
        lab,
        json=parameters(
            {"name": "patient-objects-to-sharing", "valueBoolean": True},
            {"name": "patient-ins", "valueString": VALID_INS},
        ),
    )
    assert response.status_code == 200
    task = fhir.get(f"/fhir/Task/{code}", prescriber).json
    assert {"url": EXT + "execution-withheld", "valueBoolean": True} in task["extension"]
    assert "owner" not in task
    other = create_json(http, prescriber)
    assert fhir.post(f"/fhir/Task/{other}/$take", lab).status_code == 200  # no body at all


def test_take_follows_the_scan_rules(fhir, http, session, prescriber, lab, other_lab):
    code = create_json(http, prescriber)
    mismatch = take(fhir, lab, code, {"name": "patient-ins", "valueString": OTHER_INS})
    assert mismatch.status_code == 422
    assert mismatch.json["issue"][0]["details"]["coding"][0]["code"] == "patient_mismatch"
    bad_ins = take(fhir, lab, code, {"name": "patient-ins", "valueString": "123"})
    assert bad_ins.status_code == 422
    assert bad_ins.json["issue"][0]["expression"] == ["Parameters.parameter[1]"]
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    assert take(fhir, lab, typo).json["issue"][0]["details"]["coding"][0]["code"] == "invalid_code"
    assert take(fhir, lab, code).status_code == 200
    held = take(fhir, other_lab, code)
    assert held.status_code == 409
    assert "130000029" not in held.get_data(as_text=True)
    cancelled = create_json(http, prescriber)
    http.post(
        f"/api/v1/prescriptions/{cancelled}/cancel",
        json={"reason": "x"},
        headers=prescriber.headers,
    )
    assert take(fhir, lab, cancelled).status_code == 410
    expired = create_json(http, prescriber)
    stored = session.scalar(select(Prescription).where(Prescription.code == expired))
    stored.expires_at = utcnow() - timedelta(days=1)
    session.commit()
    assert take(fhir, lab, expired).status_code == 410
    task = fhir.get(f"/fhir/Task/{expired}", prescriber).json
    assert task["status"] == "cancelled"
    assert task["statusReason"]["text"] == "expired"
    assert task["businessStatus"]["coding"][0]["code"] == "expired"
    assert fhir.get(f"/fhir/Task/{cancelled}", prescriber).json["status"] == "cancelled"


def test_take_parameters_are_checked(fhir, lab):
    for body in (
        parameters(),
        parameters({"name": "colour", "valueString": "x"}),
        parameters({"name": "code", "valueString": "a"}, {"name": "code", "valueString": "b"}),
        parameters({"name": "code", "valueBoolean": True}),
        parameters({"name": "code", "valueIdentifier": {"system": "urn:x", "value": "1"}}),
    ):
        response = fhir.post("/fhir/Task/$take", lab, json=body)
        assert response.status_code == 422, body
    response = fhir.post(
        f"/fhir/Task/{generate_code()}/$take",
        lab,
        json=parameters({"name": "code", "valueString": "x"}),
    )
    assert response.status_code == 422
    not_parameters = {"resourceType": "Task", "status": "requested", "intent": "order"}
    assert fhir.post("/fhir/Task/$take", lab, json=not_parameters).status_code == 400


def test_unknown_codes_count_towards_the_failed_scan_limit(fhir, app, session, lab):
    settings = dataclasses.replace(app.extensions["epu.settings"], failed_scan_limit=2)
    app.extensions["epu.limits"] = Limits(settings)
    for _ in range(2):
        response = take(fhir, lab, generate_code())
        assert response.status_code == 404
    blocked = take(fhir, lab, generate_code())
    assert blocked.status_code == 429
    assert blocked.json["issue"][0]["code"] == "throttled"
    assert int(blocked.headers["Retry-After"]) >= 1
    blocks = session.scalar(
        select(func.count()).select_from(Event).where(Event.type == "failed_scans_limit")
    )
    assert blocks == 1


def test_release_gives_the_prescription_back(fhir, http, prescriber, lab, other_lab):
    code = create_json(http, prescriber)
    take(fhir, lab, code)
    response = fhir.post(f"/fhir/Task/{code}/$release", lab)
    assert response.status_code == 200
    assert response.json["status"] == "requested" and "owner" not in response.json
    assert fhir.post(f"/fhir/Task/{code}/$release", lab).status_code == 404
    assert take(fhir, other_lab, code).status_code == 200
    unexpected = parameters({"name": "reason", "valueString": "x"})
    assert fhir.post(f"/fhir/Task/{code}/$release", other_lab, json=unexpected).status_code == 422


def test_complete_reports_line_outcomes_until_the_task_is_completed(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    take(fhir, lab, code)
    partial = complete(fhir, lab, code, line(code, "L1", "done"))
    assert partial.status_code == 200 and partial.json["status"] == "in-progress"
    again = complete(fhir, lab, code, line(code, "L1", "done"))
    assert again.status_code == 409
    assert again.json["issue"][0]["details"]["coding"][0]["code"] == "line_not_requested"
    last = complete(
        fhir, lab, code, line(code, "L2", "done"), line(code, "L3", "not-done", "Tube coagulé")
    )
    assert last.status_code == 200
    assert last.json["status"] == "completed"
    assert last.json["owner"]["identifier"]["value"] == "130000029"
    assert fhir.get(f"/fhir/Task/{code}", prescriber).json["status"] == "completed"
    json_view = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).json
    assert [item["status"] for item in json_view["lines"]] == ["done", "done", "not_done"]
    assert json_view["lines"][2]["reason"] == "Tube coagulé"


def test_complete_with_renewals_starts_again(fhir, http, prescriber, lab):
    code = create_json(http, prescriber, lines=[{"loinc": "57022-6", "renewals": 1}])
    take(fhir, lab, code)
    response = complete(fhir, lab, code, line(code, "L1", "done"))
    assert response.json["status"] == "requested"
    (resource,) = resources(fhir.get(f"/fhir/ServiceRequest?requisition={code}", prescriber).json)
    assert resource["status"] == "active"
    assert {"url": EXT + "renewals-left", "valueUnsignedInt": 0} in resource["extension"]


def test_complete_follows_the_done_rules(fhir, http, prescriber, lab, other_lab):
    code = create_json(http, prescriber)
    take(fhir, lab, code)
    no_reason = complete(fhir, lab, code, line(code, "L1", "not-done"))
    assert no_reason.status_code == 422
    assert no_reason.json["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    twice = complete(fhir, lab, code, line(code, "L1", "done"), line(code, "L1", "done"))
    assert twice.status_code == 422
    assert twice.json["issue"][0]["expression"] == ["Parameters.parameter[1]"]
    unknown = complete(fhir, lab, code, line(code, "L9", "done"))
    assert unknown.status_code == 422
    wrong_outcome = complete(fhir, lab, code, line(code, "L1", "maybe"))
    assert wrong_outcome.status_code == 422
    other_task = complete(fhir, lab, code, line(generate_code(), "L1", "done"))
    assert other_task.status_code == 422
    assert complete(fhir, lab, code).status_code == 422  # nothing reported
    assert complete(fhir, other_lab, code, line(code, "L1", "done")).status_code == 404
    assert fhir.post(f"/fhir/Task/{code}/$complete", lab).status_code == 400  # no Parameters
    bad_part = {"name": "line", "part": [{"name": "colour", "valueString": "x"}]}
    assert complete(fhir, lab, code, bad_part).status_code == 422
    not_line = {"name": "outcome", "valueCode": "done"}
    assert complete(fhir, lab, code, not_line).status_code == 422


def test_operations_are_for_laboratories(fhir, http, prescriber):
    code = create_json(http, prescriber)
    for path in (
        "/fhir/Task/$take",
        f"/fhir/Task/{code}/$take",
        f"/fhir/Task/{code}/$release",
        f"/fhir/Task/{code}/$complete",
    ):
        response = fhir.post(path, prescriber, json=parameters())
        assert response.status_code == 403, path
