"""GET /fhir/AuditEvent?entity=Task/<code>: the history of a prescription."""

from epu.codes import generate_code
from tests.factories import prescription_body
from tests.fhir.support import FINESS, RPPS, resources


def create_json(http, party) -> str:
    return http.post("/api/v1/prescriptions", json=prescription_body(), headers=party.headers).json[
        "code"
    ]


def events(fhir, party, entity) -> list[dict]:
    response = fhir.get(f"/fhir/AuditEvent?entity={entity}", party)
    assert response.status_code == 200
    return resources(response.json)


def subtype(event: dict) -> str:
    """EPU's event type (after the standard interaction code, where one fits)."""
    return event["subtype"][-1]["code"]


def test_history_as_audit_events_says_what_the_json_history_says(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    http.post(
        f"/api/v1/prescriptions/{code}/done",
        headers=lab.headers,
        json={"lines": [{"line_id": "L2", "outcome": "not_done", "reason": "hémolysé"}]},
    )
    found = events(fhir, lab, f"Task/{code}")
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=lab.headers).json["items"]
    assert [subtype(e) for e in found] == [item["type"] for item in history]
    assert [e["recorded"] for e in found] == [item["at"] for item in history]
    created, taken, not_done = found[:3]
    assert [e["action"] for e in found[:3]] == ["C", "U", "U"]
    assert created["id"].startswith(f"{code}-") and len({e["id"] for e in found}) == len(found)
    assert created["agent"][0]["who"]["identifier"] == {"system": RPPS, "value": "10005688790"}
    assert taken["agent"][0]["who"]["identifier"] == {"system": FINESS, "value": "130000029"}
    assert created["entity"][0]["what"] == {"reference": f"Task/{code}"}
    assert {"type": "reason", "valueString": "hémolysé"} in not_done["entity"][0]["detail"]
    assert not_done["entity"][1]["what"] == {"reference": f"ServiceRequest/{code}-L2"}
    assert len(events(fhir, prescriber, code)) == len(found)  # a bare code works too


def test_reads_are_audit_events_too(fhir, http, prescriber):
    code = create_json(http, prescriber)
    fhir.get(f"/fhir/ServiceRequest/{code}-L1", prescriber)
    (_, read) = events(fhir, prescriber, f"Task/{code}")
    assert subtype(read) == "read" and read["action"] == "R"


def test_a_withheld_execution_hides_the_laboratory_in_the_history(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    http.post(
        "/api/v1/scans",
        json={"code": code, "patient_objects_to_sharing": True},
        headers=lab.headers,
    )
    seen = events(fhir, prescriber, f"Task/{code}")
    assert [subtype(e) for e in seen] == ["created"]  # taken and the rest are hidden
    http.post(
        f"/api/v1/prescriptions/{code}/done",
        headers=lab.headers,
        json={"lines": [{"line_id": f"L{n}", "outcome": "done"} for n in (1, 2, 3)]},
    )
    seen = events(fhir, prescriber, f"Task/{code}")
    assert [subtype(e) for e in seen] == ["created", "completed"]
    assert seen[1]["agent"][0]["who"] == {
        "type": "Organization",
        "display": "Laboratoire (non communiqué)",
    }
    assert "130000029" not in str(seen)
    as_lab = {e["id"]: subtype(e) for e in events(fhir, lab, f"Task/{code}")}
    assert {e["id"]: subtype(e) for e in seen}.items() <= as_lab.items()  # the same ids


def test_someone_elses_or_unknown_history_is_empty(fhir, http, prescriber, other_prescriber):
    code = create_json(http, prescriber)
    assert events(fhir, other_prescriber, f"Task/{code}") == []
    assert events(fhir, prescriber, f"Task/{generate_code()}") == []
    assert events(fhir, prescriber, f"ServiceRequest/{code}-L1") == []
    assert events(fhir, prescriber, "Task/garbage") == []
    assert fhir.get("/fhir/AuditEvent", prescriber).status_code == 400


def test_audit_events_page_like_the_other_searches(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    page = fhir.get(f"/fhir/AuditEvent?entity=Task/{code}&_count=1", prescriber).json
    seen = [subtype(e) for e in resources(page)]
    while next_urls := [link["url"] for link in page["link"] if link["relation"] == "next"]:
        page = fhir.get(next_urls[0].removeprefix("http://localhost"), prescriber).json
        seen += [subtype(e) for e in resources(page)]
    assert seen == ["created", "taken", "released"]
    counted = fhir.get(f"/fhir/AuditEvent?entity=Task/{code}&_summary=count", prescriber).json
    assert counted["total"] == 3 and "entry" not in counted
