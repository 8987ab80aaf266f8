"""FHIR test helpers: a client that checks every /fhir answer, and transaction Bundles.

Every answer goes through `check_answer`: a 304 has no body; anything else is
application/fhir+json and parses both with fhir.resources (R4B) and with fhirclient's strict
FHIR 4.0.1 models, so the "nothing invalid goes out" promise is tested on every request.
"""

import copy
import json
import uuid
from dataclasses import dataclass

from fhir.resources.R4B import get_fhir_model_class
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from tests.factories import BLOOD_COUNT, LAST_MENSES, PROLACTIN, VALID_INS

FHIR = "application/fhir+json"
EPU_OID = "urn:oid:1.2.250.1.215.500.1.1"
INS_OID = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
LOINC = "http://loinc.org"
EXT = "https://epu.esante.gouv.fr/fhir/StructureDefinition/"
PRESCRIBER_RPPS = "10005688790"


def parse_both(body: dict):
    """The resource as fhir.resources (R4B) and fhirclient (R4, strict) read it."""
    model = get_fhir_model_class(body["resourceType"]).model_validate(body)
    FHIRElementFactory.instantiate(body["resourceType"], body)
    return model


def check_answer(response) -> None:
    if response.status_code == 304:
        assert response.get_data() == b""
        return
    if response.headers.get("Preference-Applied") == "return=minimal" and not response.data:
        return
    assert response.headers["Content-Type"] == f"{FHIR}; charset=utf-8", response.get_data()
    parse_both(response.get_json())


@dataclass
class Fhir:
    """The Flask test client, for /fhir, checking every answer."""

    http: object

    def request(self, method: str, path: str, party=None, headers=None, **kwargs):
        all_headers = {"Accept": FHIR}
        if party is not None:
            all_headers.update(party.headers)
        if "json" in kwargs:
            all_headers["Content-Type"] = FHIR
        all_headers.update(headers or {})
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json"))
        response = self.http.open(path, method=method, headers=all_headers, **kwargs)
        check_answer(response)
        return response

    def get(self, path: str, party=None, **kwargs):
        return self.request("GET", path, party, **kwargs)

    def post(self, path: str, party=None, **kwargs):
        return self.request("POST", path, party, **kwargs)

    def create(self, party, bundle=None, **kwargs) -> dict:
        """Posts a transaction; the prescription's code, version and the answer."""
        response = self.post("/fhir", party, json=bundle or transaction_bundle(), **kwargs)
        assert response.status_code == 200, response.get_json()
        location = response.json["entry"][-1]["response"]["location"]
        code = location.removeprefix("ServiceRequest/").rsplit("-", 1)[0]
        return {"code": code, "response": response}


# ---- transaction Bundles ---------------------------------------------------------------------


def patient(ins: str | None = VALID_INS, **fields) -> dict:
    resource = {"resourceType": "Patient", "gender": "female", "birthDate": "1969-05-01"}
    if ins:
        resource["identifier"] = [{"system": INS_OID, "value": ins}]
    resource.update(fields)
    return resource


def service_request(loinc: str | None = None, text: str | None = None, **fields) -> dict:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": loinc}]} if loinc else {"text": text},
        "subject": {"reference": "PATIENT"},
    }
    resource.update(fields)
    return resource


def observation(ident: str, loinc: str, **value) -> dict:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        **value,
    }


def default_lines() -> list[dict]:
    """The same prescription as tests.factories.prescription_body, as ServiceRequests."""
    reason = [{"text": "Asthénie depuis trois mois"}]
    result_return = {
        "url": EXT + "result-return",
        "extension": [{"url": "channel", "valueCode": "mssante"}],
    }
    return [
        service_request(BLOOD_COUNT, reasonCode=reason, extension=[result_return]),
        service_request(
            PROLACTIN,
            reasonCode=reason,
            contained=[observation("lmp", LAST_MENSES, valueDateTime="2026-11-02")],
            supportingInfo=[{"reference": "#lmp"}],
            extension=[
                result_return,
                {"url": EXT + "patient-instruction", "valueCode": "MED-1165"},
            ],
        ),
        service_request(
            text="Recherche de cryoglobulines", reasonCode=reason, extension=[result_return]
        ),
    ]


def transaction_bundle(
    lines: list[dict] | None = None,
    the_patient: dict | None = None,
    contained: bool = False,
    **fields,
) -> dict:
    """A transaction: the patient as an entry (urn:uuid) or contained in each ServiceRequest."""
    lines = copy.deepcopy(default_lines() if lines is None else lines)
    the_patient = patient() if the_patient is None else the_patient
    full_url = f"urn:uuid:{uuid.uuid4()}"
    entries = []
    if not contained:
        entries.append(
            {
                "fullUrl": full_url,
                "resource": the_patient,
                "request": {"method": "POST", "url": "Patient"},
            }
        )
    for line in lines:
        if line.get("subject", {}).get("reference") == "PATIENT":
            if contained:
                line.setdefault("contained", []).insert(0, {**the_patient, "id": "pat"})
                line["subject"] = {"reference": "#pat"}
            else:
                line["subject"] = {"reference": full_url}
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": line,
                "request": {"method": "POST", "url": "ServiceRequest"},
            }
        )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    bundle.update(fields)
    return bundle


def resources(bundle_json: dict) -> list[dict]:
    return [entry["resource"] for entry in bundle_json.get("entry", [])]


def extension(resource: dict, name: str):
    values = [
        {k: v for k, v in e.items() if k != "url"}
        for e in resource.get("extension", [])
        if e["url"] == EXT + name
    ]
    return values
