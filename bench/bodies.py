"""Identifiers and request bodies: a 5-line prescription, as JSON and as a FHIR transaction."""

import random
import uuid
from typing import Any

from epu.identifiers import luhn_valid

LOINC = "http://loinc.org"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
ANTICOAGULANT = "89063-2"  # clinical context the INR asks for

# (loinc, clinical context): a usual check-up, 5 coded exams (the table), one with its
# clinical context
LINES: list[tuple[str, list[dict[str, str]]]] = [
    ("57022-6", []),  # numération formule sanguine
    ("24326-1", []),  # ionogramme sanguin
    ("2160-0", []),  # créatinine
    ("1558-6", []),  # glucose à jeun
    ("6301-6", [{"code": ANTICOAGULANT, "value": "AVK"}]),  # INR
]

CLINICAL_CONTEXT = "Bilan de suivi annuel"


def with_luhn_key(digits: str) -> str:
    return next(digits + key for key in "0123456789" if luhn_valid(digits + key))


def rpps_numbers(count: int, first: int = 1_000_100_000) -> list[str]:
    return [with_luhn_key(f"{first + i:010d}") for i in range(count)]


def finess_numbers(count: int, first: int = 13_000_100) -> list[str]:
    return [with_luhn_key(f"{first + i:08d}") for i in range(count)]


def random_ins(rng: random.Random) -> str:
    """A valid INS (NIR with its mod-97 key) of a random patient."""
    body = f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}"
    body += f"{rng.randint(1, 95):02d}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    return f"{body}{97 - int(body) % 97:02d}"


def prescription(ins: str) -> dict[str, Any]:
    """The JSON API's body of a 5-line prescription."""
    return {
        "patient": {"ins": ins, "sex": "female", "birth_date": "1969-05-01"},
        "clinical_context": CLINICAL_CONTEXT,
        "result_return": {"channels": ["mssante"]},
        "lines": [
            {"loinc": loinc, "context": context} if context else {"loinc": loinc}
            for loinc, context in LINES
        ],
    }


def fhir_transaction(ins: str) -> dict[str, Any]:
    """The same prescription as a FHIR transaction Bundle: one Patient, 5 ServiceRequests
    (mapping of api/fhir/inbound.py)."""
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": INS_NIR, "value": ins}],
                "gender": "female",
                "birthDate": "1969-05-01",
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    entries += [
        {"resource": _service_request(loinc, context, patient_url)}
        | {"request": {"method": "POST", "url": "ServiceRequest"}}
        for loinc, context in LINES
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _service_request(loinc: str, context: list[dict[str, str]], subject: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject},
        "reasonCode": [{"text": CLINICAL_CONTEXT}],
    }
    if context:
        resource["contained"] = [
            {
                "resourceType": "Observation",
                "id": f"ctx{index}",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": item["code"]}]},
                "valueString": item["value"],
            }
            for index, item in enumerate(context)
        ]
        resource["supportingInfo"] = [
            {"reference": f"#ctx{index}"} for index in range(len(context))
        ]
    return resource


def done_all(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Every requested line reported done (ends the execution)."""
    return {
        "lines": [
            {"line_id": line["id"], "outcome": "done"}
            for line in lines
            if line["status"] == "requested"
        ]
    }


ADD_ONE_LINE = {
    "changes": [{"op": "add", "line": {"loinc": "718-7"}, "reason": "hémoglobine demandée"}],
    "mode": "urgent",  # applied at once, as the soak's "modify" expects (a proposal answers 202)
}
