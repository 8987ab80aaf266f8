"""FHIR test helpers: a client that checks every /fhir answer, and transaction Bundles.

Every answer goes through `check_answer`: a 304 has no body; anything else is
application/fhir+json and parses both with fhir.resources (R4B) and with fhirclient's strict
FHIR 4.0.1 models, so the "nothing invalid goes out" promise is tested on every request.
"""

import copy
import json
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

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


CANONICAL_BASE = "https://epu.esante.gouv.fr/fhir/"
RESULT_PARAMETERS = {"_count", "_cursor", "_total", "_summary", "_elements", "_format"}
RESULT_PARAMETERS |= {"_totalMethod"}
ALIASES = {
    "subject:identifier": "patient.identifier",
    "patient:identifier": "patient.identifier",
    "subject.identifier": "patient.identifier",
}
_resolved: dict[str, dict] = {}  # canonical URL -> the resource this server gives for it
_statement: dict = {}


def canonicals(value, found=None) -> set[str]:
    """Every EPU canonical URL in a JSON value (a version or fragment suffix dropped)."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for item in value.values():
            canonicals(item, found)
    elif isinstance(value, list):
        for item in value:
            canonicals(item, found)
    elif isinstance(value, str) and value.startswith(CANONICAL_BASE):
        found.add(value.split("|")[0].split("#")[0])
    return found


def codings(value, found=None) -> list[tuple[str, str]]:
    found = [] if found is None else found
    if isinstance(value, dict):
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            found.append((value["system"], value["code"]))
        for item in value.values():
            codings(item, found)
    elif isinstance(value, list):
        for item in value:
            codings(item, found)
    return found


def check_canonicals(http, body: dict) -> None:
    """Each EPU canonical URL in an answer resolves under /fhir to a valid resource of that url;
    each code of an EPU CodeSystem is one of its concepts."""
    for url in canonicals(body) - set(_resolved):
        path = "/fhir/" + url.removeprefix(CANONICAL_BASE)
        # An R4 Subscriptions Backport topic is published as a Basic resource of the same id.
        path = path.replace("/fhir/SubscriptionTopic/", "/fhir/Basic/")
        response = http.get(path, headers={"Accept": FHIR})
        assert response.status_code == 200, f"{url} does not resolve: {response.get_data()}"
        check_answer(response)
        if response.get_json()["resourceType"] != "Basic":
            assert response.get_json()["url"] == url
        _resolved[url] = response.get_json()
    for system, code in codings(body):
        definition = _resolved.get(system)
        if definition and definition["resourceType"] == "CodeSystem":
            concepts = {concept["code"] for concept in definition["concept"]}
            assert code in concepts, f"{code} is not in {system}"


def check_declared(http, method: str, path: str, query: dict, response) -> None:
    """Every search parameter and operation used (and answered) is in the CapabilityStatement
    (the parameters of a lenient search: those it applied, in its self link)."""
    if response.status_code >= 400:
        return
    links = response.get_json().get("link") if response.is_json else None
    if response.is_json and response.get_json().get("type") == "searchset" and links:
        query = parse_qs(urlsplit(links[0]["url"]).query)
    if not _statement:
        _statement.update(http.get("/fhir/metadata").get_json())
    parts = path.removeprefix("/fhir/").split("/")
    resources = {r["type"]: r for r in _statement["rest"][0]["resource"]}
    if parts[-1].startswith("$"):
        declared = {op["name"] for op in resources[parts[0]].get("operation", [])}
        assert parts[-1][1:] in declared, f"{path}: undeclared operation"
        return
    searching = (method == "GET" and len(parts) == 1) or parts[-1] == "_search"
    if not searching or parts[0] not in resources:
        return
    declared = {param["name"] for param in resources[parts[0]].get("searchParam", [])}
    for name in query:
        name = ALIASES.get(name, name)
        base = name if name in declared else name.split(":")[0]
        assert base in declared | RESULT_PARAMETERS, f"{path}: undeclared parameter {name}"


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
        if response.status_code != 304 and response.data:
            check_canonicals(self.http, response.get_json())
        split = urlsplit(path)
        query = parse_qs(split.query, keep_blank_values=True)
        if isinstance(kwargs.get("data"), str) and split.path.endswith("/_search"):
            query.update(parse_qs(kwargs["data"], keep_blank_values=True))
        check_declared(self.http, method, split.path, query, response)
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
