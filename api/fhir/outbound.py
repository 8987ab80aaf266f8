"""The domain's views out as FHIR resources: plain dicts, encoded once by wire.respond.

Built only from epu.views' dicts, so what a party may see (execution withheld from the
prescriber, laboratory lines hidden) is decided in exactly one place for both APIs. Every
kind of output is validated with fhir.resources (strict) by the tests, not per request.
"""

import json
from dataclasses import dataclass
from typing import Any

import orjson

from api.fhir import narrative
from api.fhir import systems as s
from api.fhir.outcome import Issue, outcome
from api.fhir.specimens import sampling_coding, specimen_references
from epu.lines import is_iso_date
from epu.prescriptions import ReadMemory
from epu.statuses import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    NOT_DONE,
    REMOVED,
    REPLACED,
    REQUESTED,
)

LINE_STATUS = {
    REQUESTED: "active",
    DONE: "completed",
    NOT_DONE: "revoked",
    REMOVED: "revoked",
    REPLACED: "revoked",
}
TASK_STATUS = {
    ACTIVE: "requested",
    IN_PROGRESS: "in-progress",
    COMPLETED: "completed",
    CANCELLED: "cancelled",
    EXPIRED: "cancelled",  # with statusReason "expired"
}
PRESCRIPTION_STATUS_DISPLAY = {
    ACTIVE: "Active",
    IN_PROGRESS: "Prise en charge par un laboratoire",
    COMPLETED: "Terminée",
    CANCELLED: "Annulée par le prescripteur",
    EXPIRED: "Expirée",
}
LABORATORY_PROCEDURE = {"system": s.SNOMED, "code": "108252007", "display": "Laboratory procedure"}
WITHHELD_LABORATORY = "Laboratoire (non communiqué)"
PATIENT_ID = "patient"
WARNING_TYPES = {"missing_clinical_context": "incomplete", "possible_duplicate": "duplicate"}
PATIENT_NOT_STORED = (
    "The Patient is not stored as a resource: the prescription keeps the patient's sex, birth "
    "date and a pseudonym of the INS only."
)


def service_request_id(code: str, line_id: str) -> str:
    return f"{code}-{line_id}"


def reference(code: str, line_id: str) -> dict[str, str]:
    return {"reference": f"ServiceRequest/{service_request_id(code, line_id)}"}


def service_request_status(view: dict[str, Any], line: dict[str, Any]) -> str:
    """The line's status; requested lines of a cancelled or expired prescription are revoked;
    'unknown' when the patient withheld the execution from the prescriber."""
    if view["status"] in (CANCELLED, EXPIRED) and line["status"] in (REQUESTED, None):
        return "revoked"
    if line["status"] is None:
        return "unknown"
    return LINE_STATUS[line["status"]]


def _meta(view: dict[str, Any]) -> dict[str, str]:
    return {"versionId": str(view["version"]), "lastUpdated": view["updated_at"]}


def _requisition(code: str) -> dict[str, str]:
    return {"system": s.REQUISITION_SYSTEM, "value": code}


def _laboratory(laboratory: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "Organization",
        "identifier": {"system": s.FINESS, "value": laboratory["finess"]},
        "display": laboratory["name"],
    }


# ---- ServiceRequest --------------------------------------------------------------------------


def service_requests(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [service_request(view, line) for line in view["lines"]]


def service_request(view: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    code = view["code"]
    context = [_observation(index, item) for index, item in enumerate(line["context"], 1)]
    status = service_request_status(view, line)
    exam = _exam(line)
    label = exam["text"] + (f" (LOINC {line['loinc']})" if line["loinc"] else "")
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": service_request_id(code, line["id"]),
        "meta": _meta(view),
        "text": narrative.generated(
            ("Examen", label),
            ("Statut", status),
            ("Urgent", "oui" if line["urgent"] else None),
            ("Prescription", code),
            ("Prescrit le", view["created_at"]),
            ("Valable jusqu'au", view["expires_at"]),
        ),
        "contained": [_patient(view["patient"]), *context],
        "extension": _line_extensions(view, line),
        "requisition": _requisition(code),
        "status": status,
        "intent": "order",
        "category": [{"coding": [LABORATORY_PROCEDURE]}],
        "priority": "urgent" if line["urgent"] else "routine",
        "code": exam,
        "subject": {"reference": f"#{PATIENT_ID}"},
        "occurrencePeriod": {"start": view["created_at"], "end": view["expires_at"]},
        "authoredOn": view["created_at"],
        "requester": {
            "type": "Practitioner",
            "identifier": {"system": s.RPPS, "value": view["prescriber"]["rpps"]},
            "display": view["prescriber"]["name"],
        },
        "supportingInfo": [{"reference": f"#{item['id']}"} for item in context],
        "specimen": specimen_references(view, line["id"]),
    }
    if line["replaces"]:
        resource["replaces"] = [reference(code, line["replaces"])]
    if view["laboratory"]:
        resource["performer"] = [_laboratory(view["laboratory"])]
    if view["clinical_context"]:
        resource["reasonCode"] = [{"text": view["clinical_context"]}]
    if line["comment"]:
        resource["note"] = [{"text": line["comment"]}]
    if line["patient_instructions"]:
        labels = [item["label"] or item["code"] for item in line["patient_instructions"]]
        resource["patientInstruction"] = "\n".join(labels)
    return _shallow(resource)


def _patient(patient: dict[str, Any]) -> dict[str, Any]:
    """Sex and birth date only: the base is anonymous (the INS is never given back)."""
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": {"profile": [s.FR_CORE_PATIENT]},
        "gender": patient["sex"],
        "birthDate": patient["birth_date"],
    }


def _exam(line: dict[str, Any]) -> dict[str, Any]:
    if line["loinc"]:
        coding = {"system": s.LOINC, "code": line["loinc"], "display": line["label"]}
        return {"coding": [coding], "text": line["label"]}
    coding = {"system": s.LOINC, "code": s.FREE_TEXT_LOINC, "display": s.FREE_TEXT_DISPLAY}
    return {"coding": [coding], "text": line["text"]}


def _observation(index: int, item: dict[str, Any]) -> dict[str, Any]:
    coding = {"system": s.LOINC, "code": item["code"]}
    if item.get("label"):
        coding["display"] = item["label"]
    observation = {
        "resourceType": "Observation",
        "id": f"context-{index}",
        "status": "final",
        "code": {"coding": [coding]},
    }
    value = item["value"]
    if isinstance(value, bool):
        observation["valueBoolean"] = value
    elif isinstance(value, int):
        observation["valueInteger"] = value
    elif isinstance(value, float):
        observation["valueQuantity"] = {"value": value}
    elif is_iso_date(value):
        observation["valueDateTime"] = value
    else:
        observation["valueString"] = str(value)
    return observation


def _line_extensions(view: dict[str, Any], line: dict[str, Any]) -> list[dict[str, Any]]:
    extensions = [
        {"url": s.EXT_ALD, "valueBoolean": line["ald"]},
        {"url": s.EXT_PREVENTION, "valueBoolean": line["prevention"]},
        {"url": s.EXT_WORK_ACCIDENT, "valueBoolean": line["work_accident"]},
        {"url": s.EXT_NOT_REIMBURSABLE, "valueBoolean": line["not_reimbursable"]},
        {"url": s.EXT_OFF_NOMENCLATURE, "valueBoolean": line["off_nomenclature"]},
        {"url": s.EXT_RENEWALS, "valueUnsignedInt": line["renewals"]},
    ]
    if line["renewals_left"] is not None:
        extensions.append({"url": s.EXT_RENEWALS_LEFT, "valueUnsignedInt": line["renewals_left"]})
    for item in line["patient_instructions"]:
        extensions.append({"url": s.EXT_PATIENT_INSTRUCTION, "valueCode": item["code"]})
    if line["urgent_reason"]:
        extensions.append({"url": s.EXT_URGENT_REASON, "valueString": line["urgent_reason"]})
    if line["sampling_instructions"]:
        extensions.append({"url": s.EXT_SAMPLING, "valueString": line["sampling_instructions"]})
    extensions.append({"url": s.EXT_ORIGIN, "valueCode": line["origin"]})
    if line["status"] is not None:
        extensions.append({"url": s.EXT_LINE_STATUS, "valueCode": line["status"]})
    if line["reason"]:
        extensions.append({"url": s.EXT_LINE_REASON, "valueString": line["reason"]})
    result_return = _result_return(view["result_return"])
    if result_return:
        extensions.append(result_return)
    return extensions


def _result_return(result_return: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result_return:
        return None
    parts: list[dict[str, Any]] = [
        {"url": "channel", "valueCode": channel} for channel in result_return.get("channels") or []
    ]
    if result_return.get("phone"):
        parts.append({"url": "phone", "valueString": result_return["phone"]})
    for copy in result_return.get("copies_to") or []:
        target = {"type": "Practitioner", "identifier": {"system": s.RPPS, "value": copy["rpps"]}}
        if copy.get("name"):
            target["display"] = copy["name"]
        parts.append({"url": "copy-to", "valueReference": target})
    return {"url": s.EXT_RESULT_RETURN, "extension": parts} if parts else None


def _shallow(resource: dict[str, Any]) -> dict[str, Any]:
    """Drops None values and empty lists of the resource's own elements (on the hot paths
    the nested ones are built without them)."""
    return {key: value for key, value in resource.items() if value is not None and value != []}


def _without_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """Drops None values and empty lists, which FHIR JSON never carries."""
    if isinstance(resource, dict):
        return {
            key: _without_empty(value)
            for key, value in resource.items()
            if value is not None and value != []
        }
    if isinstance(resource, list):
        return [_without_empty(item) for item in resource]
    return resource


# ---- Task ------------------------------------------------------------------------------------


def task(view: dict[str, Any]) -> dict[str, Any]:
    """The prescription's execution, from a full or a status view."""
    code, status = view["code"], view["status"]
    prescription_status = {
        "system": s.CS_PRESCRIPTION_STATUS,
        "code": status,
        "display": PRESCRIPTION_STATUS_DISPLAY[status],
    }
    extensions = []
    if view["modified"] is not None:
        extensions.append({"url": s.EXT_MODIFIED, "valueBoolean": view["modified"]})
    if view["execution_withheld"]:
        extensions.append({"url": s.EXT_EXECUTION_WITHHELD, "valueBoolean": True})
    laboratory = view["laboratory"] or {}
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": code,
        "meta": _meta(view),
        "text": narrative.generated(
            ("Prescription", code),
            ("Statut", PRESCRIPTION_STATUS_DISPLAY[status]),
            ("Examens", len(view["lines"])),
            ("Laboratoire", laboratory.get("name")),
            ("Mise à jour", view["updated_at"]),
        ),
        "extension": extensions,
        "groupIdentifier": _requisition(code),
        "basedOn": [reference(code, line["id"]) for line in view["lines"]],
        "status": TASK_STATUS[status],
        "businessStatus": {"coding": [prescription_status, *sampling_coding(view)]},
        "intent": "order",
        "code": {"coding": [{"system": s.TASK_CODE, "code": "fulfill"}]},
        "focus": reference(code, view["lines"][0]["id"]) if view["lines"] else None,
        "lastModified": view["updated_at"],
    }
    if status == EXPIRED:
        resource["statusReason"] = {"coding": [prescription_status], "text": "expired"}
    if view["laboratory"]:
        resource["owner"] = _laboratory(view["laboratory"])
    return _shallow(resource)


# ---- AuditEvent ------------------------------------------------------------------------------

_ACTION = {"created": "C", "read": "R", "read_by_nurse": "R", "printed": "R"}
# The standard (extensible) audit-event-sub-type codes where one fits; EPU's event always.
_INTERACTION = {"created": "create", "read": "read", "read_by_nurse": "read", "modified": "update"}


def _subtypes(kind: str) -> list[dict[str, str]]:
    subtypes = [{"system": s.CS_EVENT_TYPE, "code": kind}]
    if kind in _INTERACTION:
        subtypes.insert(0, {"system": s.RESTFUL_INTERACTION, "code": _INTERACTION[kind]})
    return subtypes


def audit_events(code: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_audit_event(code, event) for event in events]


def audit_event_id(code: str, event: dict[str, Any]) -> str:
    return f"{code}-{event['id']}"


def _audit_event(code: str, event: dict[str, Any]) -> dict[str, Any]:
    detail = event["detail"] or {}
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Task/{code}"},
            "detail": [
                {"type": key, "valueString": value if isinstance(value, str) else json.dumps(value)}
                for key, value in detail.items()
                if value is not None
            ],
        }
    ]
    for key in ("line", "new_line"):
        if detail.get(key):
            entities.append({"what": reference(code, detail[key])})
    resource = {
        "resourceType": "AuditEvent",
        "id": audit_event_id(code, event),
        "text": narrative.generated(
            ("Événement", event["type"]),
            ("Prescription", code),
            ("Date", event["at"]),
            ("Par", event["actor"].get("name") or event["actor"]["role"]),
        ),
        "type": {"system": s.AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": _subtypes(event["type"]),
        "action": _ACTION.get(event["type"], "U"),
        "recorded": event["at"],
        "outcome": "0",
        "agent": [{"who": _agent(event["actor"]), "requestor": event["actor"]["role"] != "system"}],
        "source": {"observer": {"type": "Device", "display": "EPU"}},
        "entity": entities,
    }
    return _without_empty(resource)


def _agent(actor: dict[str, Any]) -> dict[str, Any]:
    if actor["role"] == "system":
        return {"type": "Device", "display": actor["name"] or "EPU"}
    if actor["role"] == "lab":
        if actor["identifier"] is None:
            return {"type": "Organization", "display": WITHHELD_LABORATORY}
        identifier = {"system": s.FINESS, "value": actor["identifier"]}
        return {"type": "Organization", "identifier": identifier, "display": actor["name"]}
    identifier = {"system": s.RPPS, "value": actor["identifier"]}
    return {"type": "Practitioner", "identifier": identifier, "display": actor["name"]}


# ---- Bundles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A resource already encoded (once) for a Bundle entry."""

    resource_type: str
    id: str
    data: bytes


def kept_service_request(
    memory: ReadMemory, view: dict[str, Any], line: dict[str, Any], caller: int
) -> Encoded:
    """The line's resource as this caller sees this version (and status: a search shows an
    overdue prescription expired), built and encoded once per process in `memory`: reads,
    requisition searches and pages share it, since it depends on nothing else (not on the
    prescription's other lines)."""
    code, line_id = view["code"], line["id"]
    key = ("ServiceRequest", code, view["version"], view["status"], caller, line_id)
    data = memory.encoded(key, lambda: service_request(view, line))
    return Encoded("ServiceRequest", service_request_id(code, line_id), data)


def searchset(
    base: str,
    resources: list[Encoded] | list[dict[str, Any]],
    self_url: str,
    next_url: str | None,
    total: int | None,
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if resources:
        bundle["entry"] = [_match(base, resource) for resource in resources]
    return bundle


def _match(base: str, resource: Encoded | dict[str, Any]) -> dict[str, Any]:
    if isinstance(resource, dict):  # not encoded yet: encoded with the Bundle
        url = f"{base}/{resource['resourceType']}/{resource['id']}"
        return {"fullUrl": url, "resource": resource, "search": {"mode": "match"}}
    return {
        "fullUrl": f"{base}/{resource.resource_type}/{resource.id}",
        "resource": orjson.Fragment(resource.data),
        "search": {"mode": "match"},
    }


def transaction_response(
    base: str,
    kinds: list[str],
    view: dict[str, Any],
    status: str,
    warnings: list | None = None,
    *,
    representation: bool = False,
    outcomes: bool = False,
) -> dict[str, Any]:
    """One entry per request entry: the n-th ServiceRequest posted is the prescription's n-th
    line (beyond its lines, the entry names the Task); the JSON API's warnings about a line are
    the OperationOutcome of its entry (Prefer: return=OperationOutcome gives one to each)."""
    entries, number, lines = [], 0, view["lines"]
    version = view["version"]
    for index, kind in enumerate(kinds):
        if kind == "Patient":
            note = Issue(PATIENT_NOT_STORED, "informational", severity="information")
            entries.append({"response": {"status": "200 OK", "outcome": outcome([note])}})
            continue
        number += 1
        line = lines[number - 1] if number <= len(lines) else None
        path = f"ServiceRequest/{service_request_id(view['code'], line['id'])}" if line else None
        path = path or f"Task/{view['code']}"
        response: dict[str, Any] = {
            "status": status,
            "location": f"{path}/_history/{version}",
            "etag": f'W/"{version}"',
            "lastModified": view["updated_at"],
        }
        issues = [
            _warning(item, index) for item in warnings or [] if line and item["line"] == line["id"]
        ]
        if outcomes and not issues:
            done = "Created." if status.startswith("201") else "Already there: not created again."
            issues = [Issue(done, "informational", severity="information")]
        if issues:
            response["outcome"] = outcome(issues)
        entry: dict[str, Any] = {"fullUrl": f"{base}/{path}"}
        if representation and line is not None:
            entry["resource"] = service_request(view, line)
        entry["response"] = response
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def _warning(warning: dict[str, str], index: int) -> Issue:
    return Issue(
        warning["detail"],
        WARNING_TYPES.get(warning["code"], "informational"),
        severity="warning",
        expression=(f"Bundle.entry[{index}].resource",),
        slug=warning["code"],
    )
