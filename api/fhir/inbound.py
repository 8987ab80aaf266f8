"""A transaction Bundle of ServiceRequests in, the JSON API's prescription dict out.

The Bundle is first validated by fhir.resources; its (now valid) JSON is then read line by line
(lines_in) and handed to the JSON API's own schema (PrescriptionIn), so both APIs apply exactly
the same rules. Paths in the errors are translated into FHIRPath expressions (layout).
"""

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from marshmallow import ValidationError as MarshmallowError

from api.blueprint import shared_schema
from api.errors import flatten
from api.fhir.conditions import conditions, single
from api.fhir.layout import Layout
from api.fhir.lines_in import LineReader
from api.fhir.outcome import invalid
from api.fhir.wire import parse
from api.prescriptions.schemas import PrescriptionIn
from epu.actors import Actor


@dataclass
class Transaction:
    data: dict[str, Any]  # what PrescriptionIn loads, for epu.prescriptions.create
    layout: Layout
    kinds: list[str]  # resource type of each entry, in order
    client_identifier: str | None = None  # "system|value" of the prescriber software
    requisition: str | None = None  # If-None-Exist on an EPU requisition code


def transaction(body: dict[str, Any], actor: Actor, if_none_exist: str | None) -> Transaction:
    bundle = parse(Bundle, body, "Bundle")
    if bundle.type != "transaction":
        raise invalid("POST /fhir takes a transaction Bundle.", "Bundle.type", code="not-supported")
    entries = body.get("entry") or []
    if not entries:
        raise invalid("The Bundle holds no ServiceRequest.", "Bundle.entry", code="required")
    kinds = [_entry_kind(entry, index) for index, entry in enumerate(entries)]
    layout = Layout(line_entries=[i for i, kind in enumerate(kinds) if kind == "ServiceRequest"])
    if not layout.line_entries:
        raise invalid("The Bundle holds no ServiceRequest.", "Bundle.entry", code="required")
    patients = _patient_entries(entries, kinds)
    reader = LineReader(actor, layout, patients)
    lines = [reader.line(entries[index]["resource"], index) for index in layout.line_entries]
    for where, _ in patients.values():
        if where not in reader.used_patients:
            raise invalid("No ServiceRequest's subject refers to this Patient.", where)
    raw: dict[str, Any] = {"patient": reader.patient, "lines": lines}
    raw.update(reader.shared)
    try:
        data = shared_schema(PrescriptionIn).load(raw)
    except MarshmallowError as error:
        raise layout.error(flatten(error.messages)) from error
    found = conditions(body, entries, if_none_exist)
    return Transaction(
        data=data,
        layout=layout,
        kinds=kinds,
        client_identifier=single(
            [c for kind, c in found if kind == "identifier"] + reader.identifiers,
            "Bundle.identifier",
            "one identifier of the prescriber software per prescription",
        ),
        requisition=single(
            [c for kind, c in found if kind == "requisition"],
            "Bundle.entry.request.ifNoneExist",
            "one requisition per If-None-Exist",
        ),
    )


def _entry_kind(entry: dict[str, Any], index: int) -> str:
    at = f"Bundle.entry[{index}]"
    resource, req = entry.get("resource") or {}, entry.get("request") or {}
    kind = resource.get("resourceType")
    if kind not in ("ServiceRequest", "Patient"):
        raise invalid(
            "A transaction holds the ServiceRequests of one prescription and at most one Patient.",
            f"{at}.resource",
            code="not-supported",
        )
    if req.get("method") != "POST" or req.get("url") != kind:
        raise invalid(
            f"Each entry is created with request POST {kind}; other interactions are not "
            "supported (changes go through the JSON API).",
            f"{at}.request",
            code="not-supported",
        )
    return kind


def _patient_entries(entries: list[dict], kinds: list[str]) -> dict[str, tuple[str, dict]]:
    found = {}
    for index, kind in enumerate(kinds):
        if kind == "Patient":
            full_url = entries[index].get("fullUrl")
            if not full_url:
                raise invalid(
                    "A Patient entry needs a fullUrl (urn:uuid:...) that the ServiceRequests' "
                    "subject refers to.",
                    f"Bundle.entry[{index}].fullUrl",
                )
            found[full_url] = (f"Bundle.entry[{index}].resource", entries[index]["resource"])
    if len(found) > 1 or kinds.count("Patient") > 1:
        raise invalid("A prescription is for one patient.", "Bundle.entry")
    return found
