"""GET /fhir/ServiceRequest: read and search, with the JSON API's visibility and statuses."""

from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select

from api.fhir.params import PARIS
from epu.codes import generate_code
from models import Event, Prescription
from models.base import utcnow
from tests.factories import BLOOD_COUNT, PROLACTIN, prescription_body
from tests.fhir.support import (
    EPU_OID,
    FINESS,
    LOINC,
    PRESCRIBER_RPPS,
    RPPS,
    extension,
    resources,
)


def create_json(http, party, **overrides) -> str:
    body = prescription_body(**overrides)
    response = http.post("/api/v1/prescriptions", json=body, headers=party.headers)
    assert response.status_code == 201, response.json
    return response.json["code"]


def scan(http, lab, code, **extra):
    return http.post("/api/v1/scans", json={"code": code, **extra}, headers=lab.headers)


def done(http, lab, code, *outcomes):
    return http.post(
        f"/api/v1/prescriptions/{code}/done", json={"lines": list(outcomes)}, headers=lab.headers
    )


def read(fhir, party, code, line="L1"):
    return fhir.get(f"/fhir/ServiceRequest/{code}-{line}", party)


def by_requisition(fhir, party, code) -> list[dict]:
    response = fhir.get(f"/fhir/ServiceRequest?requisition={code}", party)
    assert response.status_code == 200
    return resources(response.json)


def test_read_service_request_says_what_the_json_api_says(fhir, http, prescriber):
    code = create_json(
        http,
        prescriber,
        lines=[
            {
                "loinc": PROLACTIN,
                "urgent": True,
                "urgent_reason": "galactorrhée",
                "ald": True,
                "not_reimbursable": True,
                "renewals": 2,
                "comment": "RAS",
                "sampling_instructions": "Tube sec",
                "patient_instructions": ["MED-1160", "MED-1165"],
                "context": [{"code": "8665-2", "value": "2026-11-02"}],
            },
            {"text": "Recherche de cryoglobulines"},
        ],
    )
    response = read(fhir, prescriber, code)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    resource = response.json
    assert resource["id"] == f"{code}-L1"
    assert resource["meta"]["versionId"] == response.headers["ETag"][3:-1]
    assert resource["requisition"] == {"system": EPU_OID, "value": code}
    assert resource["status"] == "active" and resource["intent"] == "order"
    assert resource["priority"] == "urgent"
    assert resource["code"]["coding"] == [
        {"system": LOINC, "code": PROLACTIN, "display": "Prolactine"}
    ]
    assert resource["requester"]["identifier"] == {"system": RPPS, "value": PRESCRIBER_RPPS}
    (patient, context) = resource["contained"]
    assert patient == {
        "resourceType": "Patient",
        "id": "patient",
        "meta": {"profile": ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"]},
        "gender": "female",
        "birthDate": "1969-05-01",
    }
    assert resource["subject"] == {"reference": "#patient"}
    assert context["code"]["coding"][0]["code"] == "8665-2"
    assert context["valueDateTime"] == "2026-11-02"
    assert resource["supportingInfo"] == [{"reference": f"#{context['id']}"}]
    assert resource["reasonCode"] == [{"text": "Asthénie depuis trois mois"}]
    assert resource["note"] == [{"text": "RAS"}]
    assert resource["patientInstruction"].startswith("A jeûn\n")
    assert extension(resource, "ald") == [{"valueBoolean": True}]
    assert extension(resource, "renewals") == [{"valueUnsignedInt": 2}]
    assert extension(resource, "renewals-left") == [{"valueUnsignedInt": 2}]
    assert extension(resource, "sampling-instructions") == [{"valueString": "Tube sec"}]
    assert extension(resource, "patient-instruction") == [
        {"valueCode": "MED-1160"},
        {"valueCode": "MED-1165"},
    ]
    assert extension(resource, "line-status") == [{"valueCode": "requested"}]
    assert extension(resource, "urgent-reason") == [{"valueString": "galactorrhée"}]
    assert extension(resource, "not-reimbursable") == [{"valueBoolean": True}]
    assert extension(resource, "work-accident") == [{"valueBoolean": False}]
    assert extension(resource, "off-nomenclature") == [{"valueBoolean": False}]
    free_text = read(fhir, prescriber, code, "L2").json
    assert free_text["code"]["text"] == "Recherche de cryoglobulines"
    assert [(c["system"], c["code"]) for c in free_text["code"]["coding"]] == [(LOINC, "19146-0")]
    assert extension(free_text, "urgent-reason") == []
    assert free_text["priority"] == "routine"


def test_service_request_is_versioned_but_not_conditionally_read(fhir, http, prescriber):
    code = create_json(http, prescriber)
    first = read(fhir, prescriber, code)
    again = fhir.get(
        f"/fhir/ServiceRequest/{code}-L1",
        prescriber,
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 200  # conditionalRead: not-supported (each read is audited)
    assert int(again.json["meta"]["versionId"]) >= int(first.json["meta"]["versionId"])


def test_reads_follow_the_json_api_visibility(fhir, http, prescriber, other_prescriber, lab):
    code = create_json(http, prescriber)
    for party, path in (
        (other_prescriber, f"{code}-L1"),
        (lab, f"{code}-L1"),  # not taken yet
        (prescriber, f"{code}-L9"),
        (prescriber, f"{generate_code()}-L1"),
        (prescriber, "nothing"),
        (prescriber, "not-a-code-L1"),
    ):
        response = fhir.get(f"/fhir/ServiceRequest/{path}", party)
        assert response.status_code == 404, path
        assert response.json["issue"][0]["code"] == "not-found"
    assert by_requisition(fhir, other_prescriber, code) == []
    assert by_requisition(fhir, lab, code) == []
    scan(http, lab, code)
    assert read(fhir, lab, code).status_code == 200
    assert len(by_requisition(fhir, lab, code)) == 3


def test_search_by_requisition_reads_the_whole_prescription(fhir, http, session, prescriber):
    code = create_json(http, prescriber)
    found = by_requisition(fhir, prescriber, code)
    assert [r["id"] for r in found] == [f"{code}-L1", f"{code}-L2", f"{code}-L3"]
    with_system = fhir.get(
        f"/fhir/ServiceRequest?requisition={quote(EPU_OID + '|' + code)}", prescriber
    )
    assert len(resources(with_system.json)) == 3
    assert with_system.json["total"] == 3
    other_system = fhir.get(f"/fhir/ServiceRequest?requisition=urn:x|{code}", prescriber)
    assert resources(other_system.json) == []
    typed = code[:4].lower() + "-" + code[4:]
    assert len(by_requisition(fhir, prescriber, typed)) == 3
    assert by_requisition(fhir, prescriber, "garbage") == []
    reads = list(session.scalars(select(Event).where(Event.type == "read")))
    # a search by requisition is a read, recorded like the JSON API's (repeats within 10
    # minutes by the same party are counted in one event)
    assert sum(event.detail.get("count", 1) for event in reads) == 3


def test_search_own_by_requester_status_and_last_updated_with_paging(
    fhir, http, session, prescriber, other_prescriber, lab
):
    codes = [create_json(http, prescriber) for _ in range(3)]
    create_json(http, other_prescriber)
    scan(http, lab, codes[0])
    done(http, lab, codes[0], {"line_id": "L1", "outcome": "done"})
    seen, url = [], "/fhir/ServiceRequest?_count=1"
    pages = 0
    while url:
        page = fhir.get(url.removeprefix("http://localhost"), prescriber).json
        seen += [r["id"] for r in resources(page)]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        pages += 1
    assert pages == 9  # _count counts entries: one ServiceRequest a page
    assert sorted(seen) == sorted(f"{code}-L{n}" for code in codes for n in (1, 2, 3))
    completed = resources(fhir.get("/fhir/ServiceRequest?status=completed", prescriber).json)
    assert [r["id"] for r in completed] == [f"{codes[0]}-L1"]
    active = resources(fhir.get("/fhir/ServiceRequest?status=active,revoked", prescriber).json)
    assert len(active) == 8
    mine = f"requester:identifier={quote(RPPS + '|' + PRESCRIBER_RPPS)}"
    assert len(resources(fhir.get(f"/fhir/ServiceRequest?{mine}", prescriber).json)) == 9
    for other in ("requester=10003092342", "requester:identifier=urn:x|" + PRESCRIBER_RPPS):
        assert resources(fhir.get(f"/fhir/ServiceRequest?{other}", prescriber).json) == []
    assert (
        len(
            resources(
                fhir.get(
                    f"/fhir/ServiceRequest?requester=Practitioner/{PRESCRIBER_RPPS}", prescriber
                ).json
            )
        )
        == 9
    )
    stored = session.scalar(select(Prescription).where(Prescription.code == codes[0]))
    since = quote(stored.updated_at.isoformat())
    recent = resources(fhir.get(f"/fhir/ServiceRequest?_lastUpdated=ge{since}", prescriber).json)
    assert {r["id"].rsplit("-", 1)[0] for r in recent} == {codes[0]}
    after = fhir.get(f"/fhir/ServiceRequest?_lastUpdated=gt{since}", prescriber).json
    assert resources(after) == []
    today = utcnow().astimezone(PARIS).date()  # a date without zone is a Paris day
    day_range = f"_lastUpdated=ge{today}&_lastUpdated=lt{today + timedelta(days=1)}"
    assert len(resources(fhir.get(f"/fhir/ServiceRequest?{day_range}", prescriber).json)) == 9
    assert (
        resources(fhir.get(f"/fhir/ServiceRequest?_lastUpdated=lt{today}", prescriber).json) == []
    )
    assert (
        len(resources(fhir.get(f"/fhir/ServiceRequest?_lastUpdated={today}", prescriber).json)) == 9
    )
    with_requisition = fhir.get(
        f"/fhir/ServiceRequest?requisition={codes[0]}&status=completed", prescriber
    )
    assert [r["id"] for r in resources(with_requisition.json)] == [f"{codes[0]}-L1"]


def test_listing_is_for_prescribers_laboratories_search_by_requisition(fhir, lab):
    response = fhir.get("/fhir/ServiceRequest?status=active", lab)
    assert response.status_code == 403
    assert response.json["issue"][0]["code"] == "forbidden"


def test_unknown_parameters_are_refused_unless_lenient(fhir, http, prescriber):
    create_json(http, prescriber)
    strict = fhir.get("/fhir/ServiceRequest?_sort=date&status=active", prescriber)
    assert strict.status_code == 400
    assert strict.json["issue"][0]["code"] == "not-supported"
    assert strict.json["issue"][0]["expression"] == ["_sort"]
    lenient = fhir.get(
        "/fhir/ServiceRequest?_sort=date&status=active",
        prescriber,
        headers={"Prefer": "Handling=Lenient"},
    )
    assert len(resources(lenient.json)) == 3
    assert lenient.json["link"][0]["url"] == "http://localhost/fhir/ServiceRequest?status=active"


@pytest.mark.parametrize(
    "query",
    [
        "status=ordered",
        "_lastUpdated=yesterday",
        "_lastUpdated=2026-13-01",
        "_count=many",
        "_total=maybe",
        "_cursor=nonsense",
        "requester=1&requester:identifier=2",
    ],
)
def test_bad_search_values_are_400(fhir, prescriber, query):
    response = fhir.get(f"/fhir/ServiceRequest?{query}", prescriber)
    assert response.status_code == 400, query
    assert response.json["issue"][0]["severity"] == "error"


def statuses(fhir, party, code) -> dict[str, str]:
    return {r["id"].rsplit("-", 1)[1]: r["status"] for r in by_requisition(fhir, party, code)}


def test_line_statuses_map_to_request_statuses(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    scan(http, lab, code)
    etag = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).headers["ETag"]
    changes = [
        {"op": "replace", "line_id": "L3", "reason": "codé", "line": {"loinc": BLOOD_COUNT}},
        {"op": "remove", "line_id": "L2", "reason": "déjà fait"},
    ]
    response = http.patch(
        f"/api/v1/prescriptions/{code}",
        json={"changes": changes, "mode": "urgent"},
        headers={**lab.headers, "If-Match": etag},
    )
    assert response.status_code == 200
    done(http, lab, code, {"line_id": "L1", "outcome": "not_done", "reason": "hémolysé"})
    found = {r["id"].rsplit("-", 1)[1]: r for r in by_requisition(fhir, lab, code)}
    assert {k: r["status"] for k, r in found.items()} == {
        "L1": "revoked",
        "L2": "revoked",
        "L3": "revoked",
        "L4": "active",
    }
    assert extension(found["L1"], "line-status") == [{"valueCode": "not_done"}]
    assert extension(found["L1"], "line-status-reason") == [{"valueString": "hémolysé"}]
    assert extension(found["L2"], "line-status") == [{"valueCode": "removed"}]
    assert extension(found["L3"], "line-status") == [{"valueCode": "replaced"}]
    assert found["L4"]["replaces"] == [{"reference": f"ServiceRequest/{code}-L3"}]
    assert extension(found["L4"], "line-origin") == [{"valueCode": "laboratory"}]
    assert found["L4"]["performer"][0]["identifier"] == {"system": FINESS, "value": "130000029"}
    done(http, lab, code, {"line_id": "L4", "outcome": "done"})
    assert statuses(fhir, prescriber, code)["L4"] == "completed"


def test_cancelled_and_expired_prescriptions_revoke_their_requested_lines(
    fhir, http, session, prescriber
):
    cancelled = create_json(http, prescriber)
    http.post(
        f"/api/v1/prescriptions/{cancelled}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert set(statuses(fhir, prescriber, cancelled).values()) == {"revoked"}
    expired = create_json(http, prescriber)
    stored = session.scalar(select(Prescription).where(Prescription.code == expired))
    stored.expires_at = utcnow() - timedelta(days=1)
    session.commit()
    listed = fhir.get("/fhir/ServiceRequest?status=revoked", prescriber).json  # not yet written
    assert len([r for r in resources(listed) if r["id"].startswith(expired)]) == 3
    assert set(statuses(fhir, prescriber, expired).values()) == {"revoked"}
    assert resources(fhir.get("/fhir/ServiceRequest?status=active", prescriber).json) == []


def test_a_withheld_execution_stays_hidden_from_the_prescriber(fhir, http, prescriber, lab):
    code = create_json(http, prescriber)
    scan(http, lab, code, patient_objects_to_sharing=True)
    etag = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).headers["ETag"]
    http.patch(
        f"/api/v1/prescriptions/{code}",
        headers={**lab.headers, "If-Match": etag},
        json={
            "changes": [{"op": "add", "reason": "bilan", "line": {"loinc": BLOOD_COUNT}}],
            "mode": "urgent",
        },
    )
    done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    seen = by_requisition(fhir, prescriber, code)
    assert [r["id"] for r in seen] == [f"{code}-L1", f"{code}-L2", f"{code}-L3"]  # no L4
    for resource in seen:
        assert resource["status"] == "unknown"
        assert "performer" not in resource
        assert extension(resource, "line-status") == []
        assert extension(resource, "renewals-left") == []
    assert "130000029" not in str(seen)
    assert read(fhir, prescriber, code, "L4").status_code == 404
    lab_view = {r["id"][-2:]: r["status"] for r in by_requisition(fhir, lab, code)}
    assert lab_view == {"L1": "completed", "L2": "active", "L3": "active", "L4": "active"}
    listed = resources(fhir.get("/fhir/ServiceRequest?status=unknown", prescriber).json)
    assert len(listed) == 3


def test_a_read_again_shows_each_new_version_and_each_caller_its_own(fhir, http, prescriber, lab):
    # A ServiceRequest is kept encoded per version, caller and line (epu.prescriptions.ReadMemory):
    # none of them may be served to another.
    code = create_json(http, prescriber)
    first = read(fhir, prescriber, code)
    assert read(fhir, prescriber, code).data == first.data
    assert read(fhir, prescriber, code, "L2").json["id"] == f"{code}-L2"
    scan(http, lab, code, patient_objects_to_sharing=True)
    done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    by_lab = read(fhir, lab, code)
    assert by_lab.json["status"] == "completed"
    assert by_lab.json["performer"][0]["identifier"]["value"] == "130000029"
    by_prescriber = read(fhir, prescriber, code)
    assert by_prescriber.json["meta"]["versionId"] == by_lab.json["meta"]["versionId"] != "1"
    assert by_prescriber.json["status"] == "unknown"
    assert "130000029" not in by_prescriber.data.decode()


def test_a_page_again_comes_from_the_kept_views_and_a_change_shows_at_once(
    fhir, http, app, prescriber
):
    from sqlalchemy import event as sa_event

    codes = [create_json(http, prescriber) for _ in range(2)]
    first = fhir.get("/fhir/ServiceRequest?_count=50", prescriber).json
    statements: list[str] = []
    engine = app.extensions["epu.engine"]
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        again = fhir.get("/fhir/ServiceRequest?_count=50", prescriber).json
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert resources(again) == resources(first) and len(resources(first)) == 6
    assert len([s for s in statements if "prescription" in s]) == 1  # the page's one query
    cancelled = http.post(
        f"/api/v1/prescriptions/{codes[0]}/cancel", json={"reason": "erreur"},
        headers=prescriber.headers,
    )  # fmt: skip
    assert cancelled.status_code == 200
    after = resources(fhir.get("/fhir/ServiceRequest?_count=50", prescriber).json)
    statuses = {r["id"].rsplit("-", 1)[0]: r["status"] for r in after}
    assert statuses == {codes[0]: "revoked", codes[1]: "active"}


def test_a_page_shows_an_overdue_prescription_revoked_after_a_read_kept_it_active(
    fhir, http, session, prescriber
):
    # Reads and pages share the encoded resources (outbound.kept_service_request): the page's
    # view of an overdue prescription is expired at the same version, and must not be served
    # the resource a read kept while it was active.
    code = create_json(http, prescriber)
    assert read(fhir, prescriber, code).json["status"] == "active"
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    stored.expires_at = utcnow() - timedelta(days=1)
    session.commit()
    page = resources(fhir.get("/fhir/ServiceRequest?_count=50", prescriber).json)
    assert {r["status"] for r in page if r["id"].startswith(code)} == {"revoked"}
