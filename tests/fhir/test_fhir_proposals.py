"""Proposals in FHIR: Task code `change`, $propose, $accept-proposal, $refuse-proposal,
$withdraw-proposal, resolvable OperationDefinitions."""

from tests.factories import prescription_body
from tests.fhir.support import EXT, FINESS, LOINC, RPPS

TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
CHANGE = "https://epu.esante.gouv.fr/fhir/CodeSystem/proposal-change"


def parameters(*items) -> dict:
    return {"resourceType": "Parameters", "parameter": list(items)}


def new_held(http, prescriber, lab) -> str:
    code = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    ).json["code"]
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    return code


def change(op, reason, line=None, request=None) -> dict:
    parts = [{"name": "op", "valueCode": op}, {"name": "reason", "valueString": reason}]
    if line:
        parts.append({"name": "line", "valueReference": {"reference": line}})
    if request:
        parts.append({"name": "request", "resource": request})
    return {"name": "change", "part": parts}


def proposed_request(code=None, text=None, **fields) -> dict:
    coded = (
        {"coding": [{"system": LOINC, "code": code}]}
        if code
        else {
            "coding": [{"system": LOINC, "code": "19146-0"}],
            "text": text,
        }
    )
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": coded,
        "subject": {"display": "le patient de la prescription"},
        **fields,
    }


def propose(fhir, lab, code, *changes, **headers):
    return fhir.post(f"/fhir/Task/{code}/$propose", lab, json=parameters(*changes), headers=headers)


def test_a_proposal_is_a_change_task_the_prescriber_accepts(fhir, http, prescriber, lab):
    code = new_held(http, prescriber, lab)
    etag = fhir.get(f"/fhir/Task/{code}", lab).headers["ETag"]
    replacement = proposed_request(
        "718-7",
        priority="urgent",
        extension=[
            {"url": EXT + "urgent-reason", "valueString": "pâleur"},
            {"url": EXT + "work-accident", "valueBoolean": True},
        ],
    )
    response = propose(
        fhir,
        lab,
        code,
        change("replace", "NFS faite hier", line=f"ServiceRequest/{code}-L1", request=replacement),
        change("remove", "non réalisable", line=f"ServiceRequest/{code}-L3"),
        change("add", "à préciser", request=proposed_request(text="Vitamine B8")),
        **{"If-Match": etag},
    )
    assert response.status_code == 200, response.json
    task = response.json
    assert task["id"] == f"{code}-P1"
    assert task["status"] == "requested" and task["intent"] == "proposal"
    assert task["code"]["coding"] == [{"system": TASK_CODE, "code": "change"}]
    assert task["focus"] == {"reference": f"Task/{code}"}
    assert task["requester"]["identifier"] == {"system": FINESS, "value": "130000029"}
    assert task["owner"]["identifier"] == {"system": RPPS, "value": "10005688790"}
    contained = {item["id"]: item for item in task["contained"]}
    replacing = contained["change-1"]
    assert replacing["intent"] == "proposal"
    assert replacing["replaces"] == [{"reference": f"ServiceRequest/{code}-L1"}]
    assert replacing["priority"] == "urgent"
    free_text = contained["change-3"]
    assert free_text["code"]["text"] == "Vitamine B8"
    assert free_text["code"]["coding"][0]["code"] == "19146-0"
    assert [i["valueReference"]["reference"] for i in task["input"]] == [
        "#change-1",
        f"ServiceRequest/{code}-L3",
        "#change-3",
    ]
    assert [i["type"]["coding"][0]["code"] for i in task["input"]] == ["replace", "remove", "add"]
    assert fhir.get(f"/fhir/Task/{code}-P1", prescriber).json["status"] == "requested"

    accepted = fhir.post(
        f"/fhir/Task/{code}-P1/$accept-proposal",
        prescriber,
        json=parameters({"name": "comment", "valueString": "d'accord"}),
    )
    assert accepted.status_code == 200, accepted.json
    assert accepted.json["status"] == "accepted"
    assert accepted.json["note"] == [{"text": "d'accord"}]
    lines = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).json["lines"]
    assert [line["status"] for line in lines] == [
        "replaced",
        "requested",
        "removed",
        "requested",
        "requested",
    ]
    assert lines[3]["work_accident"] is True and lines[3]["urgent_reason"] == "pâleur"
    assert lines[4]["text"] == "Vitamine B8"
    again = fhir.post(
        f"/fhir/Task/{code}-P1/$refuse-proposal",
        prescriber,
        json=parameters({"name": "comment", "valueString": "non"}),
    )
    assert again.status_code == 409


def test_refuse_needs_a_comment_and_withdraw_is_the_laboratorys(fhir, http, prescriber, lab):
    code = new_held(http, prescriber, lab)
    propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L3"))
    missing = fhir.post(f"/fhir/Task/{code}-P1/$refuse-proposal", prescriber, json=parameters())
    assert missing.status_code == 422
    refused = fhir.post(
        f"/fhir/Task/{code}-P1/$refuse-proposal",
        prescriber,
        json=parameters({"name": "comment", "valueString": "je maintiens"}),
    )
    assert refused.json["status"] == "rejected"
    propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L3"))
    assert fhir.post(f"/fhir/Task/{code}-P2/$withdraw-proposal", prescriber).status_code == 403
    withdrawn = fhir.post(f"/fhir/Task/{code}-P2/$withdraw-proposal", lab)
    assert withdrawn.status_code == 200 and withdrawn.json["status"] == "cancelled"


def test_applied_at_once_and_refusals_point_at_the_parameter(fhir, http, prescriber, lab):
    code = new_held(http, prescriber, lab)
    mode = {"name": "mode", "valueCode": "prescriber_unavailable"}
    no_reason = fhir.post(
        f"/fhir/Task/{code}/$propose",
        lab,
        json=parameters(mode, change("remove", "r", line=f"ServiceRequest/{code}-L3")),
    )
    assert no_reason.status_code == 422
    unknown_line = propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L9"))
    assert unknown_line.status_code == 422
    assert unknown_line.json["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    applied = fhir.post(
        f"/fhir/Task/{code}/$propose",
        lab,
        json=parameters(
            mode,
            {"name": "reason", "valueString": "cabinet fermé"},
            change("remove", "r", line=f"ServiceRequest/{code}-L3"),
        ),
    )
    assert applied.status_code == 200, applied.json
    assert applied.json["status"] == "completed"
    assert applied.json["reasonCode"] == {"text": "cabinet fermé"}
    stale = propose(
        fhir,
        lab,
        code,
        change("remove", "r", line=f"ServiceRequest/{code}-L2"),
        **{"If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412


def test_others_see_nothing(fhir, http, prescriber, other_prescriber, lab, other_lab):
    code = new_held(http, prescriber, lab)
    propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L3"))
    assert fhir.get(f"/fhir/Task/{code}-P1", other_prescriber).status_code == 404
    assert fhir.get(f"/fhir/Task/{code}-P1", other_lab).status_code == 404
    answer = fhir.post(f"/fhir/Task/{code}-P1/$accept-proposal", other_prescriber)
    assert answer.status_code == 404
    assert fhir.get(f"/fhir/Task/{code}-P7", prescriber).status_code == 404
    assert (
        propose(
            fhir, other_lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L3")
        ).status_code
        == 404
    )


def test_the_operations_are_declared_and_their_definitions_resolve(fhir):
    statement = fhir.get("/fhir/metadata").json
    [task] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Task"]
    declared = {op["name"]: op["definition"] for op in task["operation"]}
    for name in ("propose", "accept-proposal", "refuse-proposal", "withdraw-proposal"):
        url = declared[name]
        resolved = fhir.get("/fhir/OperationDefinition/" + url.rsplit("/", 1)[1])
        assert resolved.status_code == 200
        assert resolved.json["url"] == url and resolved.json["code"] == name
    assert fhir.get("/fhir/OperationDefinition/Task-nothing").status_code == 404


def test_the_proposals_of_a_prescription_are_found_by_focus(
    fhir, http, prescriber, lab, other_prescriber
):
    code = new_held(http, prescriber, lab)
    propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L3"))
    fhir.post(f"/fhir/Task/{code}-P1/$withdraw-proposal", lab)
    propose(fhir, lab, code, change("remove", "r", line=f"ServiceRequest/{code}-L2"))
    found = fhir.get(f"/fhir/Task?focus=Task/{code}", prescriber).json
    tasks = [entry["resource"] for entry in found.get("entry", [])]
    assert [(t["id"], t["status"]) for t in tasks] == [
        (f"{code}-P1", "cancelled"),
        (f"{code}-P2", "requested"),
    ]
    nothing = fhir.get(f"/fhir/Task?focus=Task/{code}", other_prescriber).json
    assert nothing.get("entry", []) == []
    both = fhir.get(f"/fhir/Task?focus=Task/{code}&group-identifier={code}", prescriber)
    assert both.status_code == 400
