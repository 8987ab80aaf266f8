"""A real FHIR client library (fhirclient, FHIR 4.0.1) against a real HTTP server.

The prescriber's software posts a transaction, searches by requisition and polls the Task with
fhirclient; a laboratory works through the JSON API over HTTP; the prescriber follows the Task
to completed, and both APIs tell the same story.
"""

import threading

import pytest
import requests
from fhirclient import client
from fhirclient.models.auditevent import AuditEvent
from fhirclient.models.bundle import Bundle
from fhirclient.models.servicerequest import ServiceRequest
from fhirclient.models.task import Task
from werkzeug.serving import make_server

from tests.factories import BLOOD_COUNT
from tests.fhir.support import transaction_bundle

STATUS_OF_LINE = {
    "requested": "active",
    "done": "completed",
    "not_done": "revoked",
    "removed": "revoked",
    "replaced": "revoked",
}


@pytest.fixture
def live_server(app, http):
    """The app on 127.0.0.1:<free port>, in a thread, for this test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def fhir_client(base: str, token: str) -> client.FHIRClient:
    smart = client.FHIRClient(settings={"app_id": "logiciel-medecin", "api_base": f"{base}/fhir"})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    return smart


def by_requisition(smart, code: str) -> list[ServiceRequest]:
    search = ServiceRequest.where({"requisition": code})
    return list(search.perform_resources_iter(smart.server))


def test_a_fhir_client_follows_a_prescription(live_server, prescriber, lab):
    smart = fhir_client(live_server, prescriber.token)
    smart.prepare()
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    resources = {r.type for r in statement.rest[0].resource}
    assert resources == {"ServiceRequest", "Task", "AuditEvent", "Subscription", "Basic"}

    # The GP's software posts the prescription as a transaction.
    answer = Bundle(transaction_bundle()).create(smart.server)
    response = Bundle(answer)
    assert response.type == "transaction-response"
    locations = [entry.response.location for entry in response.entry[1:]]
    assert [entry.response.status for entry in response.entry[1:]] == ["201 Created"] * 3
    code = locations[0].split("/")[1].rsplit("-", 1)[0]

    # It finds the ServiceRequests by requisition, and reads the Task.
    found = by_requisition(smart, code)
    assert [f"ServiceRequest/{sr.id}/_history/1" for sr in found] == locations
    assert found[0].code.coding[0].display == "Numération formule sanguine"
    assert found[2].code.text == "Recherche de cryoglobulines"
    assert {sr.requisition.value for sr in found} == {code}
    assert {sr.status for sr in found} == {"active"}
    task = Task.read(code, smart.server)
    assert task.status == "requested" and task.groupIdentifier.value == code
    etag = f'W/"{task.meta.versionId}"'
    unchanged = smart.server.request_data(f"Task/{code}", headers={"If-None-Match": etag})
    assert unchanged == b""  # 304: polling is cheap

    # A laboratory works through the JSON API, over HTTP.
    lab_headers = lab.headers
    scan = requests.post(
        f"{live_server}/api/v1/scans", json={"code": code}, headers=lab_headers, timeout=10
    )
    assert scan.status_code == 200
    assert Task.read(code, smart.server).status == "in-progress"
    changes = [
        {
            "op": "add",
            "reason": "bilan complété",
            "line": {"loinc": BLOOD_COUNT, "urgent": True, "urgent_reason": "anémie"},
        }
    ]
    patched = requests.patch(
        f"{live_server}/api/v1/prescriptions/{code}",
        json={"changes": changes, "mode": "urgent"},
        timeout=10,
        headers={**lab_headers, "If-Match": scan.headers["ETag"]},
    )
    assert patched.status_code == 200
    outcomes = [
        {"line_id": "L1", "outcome": "done"},
        {"line_id": "L2", "outcome": "done"},
        {"line_id": "L3", "outcome": "not_done", "reason": "non réalisable"},
        {"line_id": "L4", "outcome": "done"},
    ]
    done = requests.post(
        f"{live_server}/api/v1/prescriptions/{code}/done",
        json={"lines": outcomes},
        headers=lab_headers,
        timeout=10,
    )
    assert done.status_code == 200

    # The prescriber's software follows the Task to completed.
    task = Task.read(code, smart.server)
    assert task.status == "completed"
    assert task.owner.identifier.value == "130000029"
    assert task.businessStatus.coding[0].code == "completed"
    assert smart.server.request_data(f"Task/{code}", headers={"If-None-Match": etag}) != b""
    history = AuditEvent.where({"entity": f"Task/{code}"}).perform_resources_iter(smart.server)
    assert [event.subtype[0].code for event in history][-1] == "completed"

    # The same prescription read through both APIs says the same thing.
    fhir_lines = by_requisition(smart, code)
    json_view = requests.get(
        f"{live_server}/api/v1/prescriptions/{code}", headers=prescriber.headers, timeout=10
    ).json()
    assert_same(json_view, fhir_lines, task)


def assert_same(json_view: dict, fhir_lines: list[ServiceRequest], task: Task) -> None:
    code = json_view["code"]
    assert [sr.id for sr in fhir_lines] == [f"{code}-{line['id']}" for line in json_view["lines"]]
    assert task.status == json_view["status"]
    assert task.owner.identifier.value == json_view["laboratory"]["finess"]
    assert task.extension[0].valueBoolean is json_view["modified"]
    for line, sr in zip(json_view["lines"], fhir_lines, strict=True):
        assert sr.status == STATUS_OF_LINE[line["status"]]
        assert sr.priority == ("urgent" if line["urgent"] else "routine")
        if line["loinc"]:
            assert (sr.code.coding[0].code, sr.code.coding[0].display) == (
                line["loinc"],
                line["label"],
            )
        else:
            assert sr.code.text == line["text"]
            assert [(c.system, c.code) for c in sr.code.coding] == [("http://loinc.org", "19146-0")]
        patient = sr.contained[0]
        assert (patient.gender, patient.birthDate.isostring) == (
            json_view["patient"]["sex"],
            json_view["patient"]["birth_date"],
        )
        assert sr.requester.identifier.value == json_view["prescriber"]["rpps"]
        assert sr.reasonCode[0].text == json_view["clinical_context"]
        extensions = {e.url.rsplit("/", 1)[1]: e for e in sr.extension}
        assert extensions["line-status"].valueCode == line["status"]
        assert extensions["line-origin"].valueCode == line["origin"]
        assert extensions["renewals"].valueUnsignedInt == line["renewals"]
        reason = extensions.get("line-status-reason")
        assert (reason.valueString if reason else None) == line["reason"]
        if line["replaces"]:
            assert sr.replaces[0].reference.endswith(line["replaces"])


def test_fhirclient_pages_through_a_search(live_server, prescriber):
    smart = fhir_client(live_server, prescriber.token)
    for _ in range(3):
        Bundle(
            transaction_bundle(
                [
                    {
                        "resourceType": "ServiceRequest",
                        "status": "active",
                        "intent": "order",
                        "code": {"text": "Examen"},
                        "subject": {"reference": "PATIENT"},
                    }
                ]
            )
        ).create(smart.server)
    pages = list(ServiceRequest.where({"_count": "1"}).perform_iter(smart.server))
    assert len(pages) == 3
    assert len({page.entry[0].resource.id for page in pages}) == 3
