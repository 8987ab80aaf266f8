"""fhirpy, unmodified, against a real HTTP server: a transaction, reads, searches with each
parameter, count(), every page, the Task operations."""

import threading

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from werkzeug.serving import make_server

from tests.factories import BLOOD_COUNT, PROLACTIN
from tests.fhir.support import EPU_OID, LOINC, RPPS, transaction_bundle


@pytest.fixture
def live_server(app, http):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()
    thread.join(timeout=10)


def client(base: str, party) -> SyncFHIRClient:
    return SyncFHIRClient(base, authorization=f"Bearer {party.token}")


def create(fhir: SyncFHIRClient) -> str:
    answer = fhir.execute("", method="post", data=transaction_bundle())
    assert answer["type"] == "transaction-response"
    return answer["entry"][1]["response"]["location"].split("/")[1].rsplit("-", 1)[0]


def test_fhirpy_creates_searches_counts_and_pages(live_server, prescriber):
    fhir = client(live_server, prescriber)
    codes = [create(fhir) for _ in range(3)]
    requests = fhir.resources("ServiceRequest")
    assert requests.count() == 9
    assert requests.search(code=BLOOD_COUNT).count() == 3
    every = requests.limit(2).fetch_all()  # five pages, followed by fhirpy
    assert sorted(r.id for r in every) == sorted(f"{c}-L{n}" for c in codes for n in (1, 2, 3))
    by_requisition = requests.search(requisition=f"{EPU_OID}|{codes[0]}").fetch_all()
    assert [r.id for r in by_requisition] == [f"{codes[0]}-L{n}" for n in (1, 2, 3)]
    assert {r.id for r in requests.search(_id=f"{codes[1]}-L2").fetch()} == {f"{codes[1]}-L2"}
    coded = requests.search(code=f"{LOINC}|{PROLACTIN}", status="active").fetch_all()
    assert len(coded) == 3
    mine = requests.search(**{"requester:identifier": f"{RPPS}|10005688790"}).count()
    assert mine == 9
    assert requests.search(_lastUpdated__ge="2020-01-01").count() == 9
    first = requests.search(requisition=codes[2]).first()
    assert first.id == f"{codes[2]}-L1"
    read = fhir.reference("ServiceRequest", f"{codes[2]}-L3").to_resource()
    assert read.code.text == "Recherche de cryoglobulines"
    task = fhir.reference("Task", codes[0]).to_resource()
    assert task.status == "requested"
    tasks = fhir.resources("Task").search(**{"group-identifier": codes[0]}).fetch()
    assert [t.id for t in tasks] == [codes[0]]
    history = fhir.resources("AuditEvent").search(entity=f"Task/{codes[0]}").fetch_all()
    assert history[0].subtype[-1].code == "created"


def test_fhirpy_sees_a_refused_search_as_an_operation_outcome(live_server, prescriber):
    fhir = client(live_server, prescriber)
    with pytest.raises(OperationOutcome) as refused:
        fhir.resources("ServiceRequest").search(subject="Patient/1").fetch()
    assert "subject" in str(refused.value)


def test_fhirpy_runs_the_laboratory_operations(live_server, prescriber, lab):
    code = create(client(live_server, prescriber))
    fhir = client(live_server, lab)
    taken = fhir.execute(
        "Task/$take",
        data={"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]},
    )
    assert taken["parameter"][0]["resource"]["status"] == "in-progress"
    task = fhir.reference("Task", code)
    reference = {"reference": f"ServiceRequest/{code}-L1"}
    done = task.execute(
        "$complete",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "line",
                    "part": [
                        {"name": "request", "valueReference": reference},
                        {"name": "outcome", "valueCode": "done"},
                    ],
                }
            ],
        },
    )
    assert done["resourceType"] == "Task"
    released = task.execute("$release")
    assert released["status"] == "requested"
