"""What EPU defines, published under /fhir so that every canonical URL it gives resolves:
the StructureDefinitions of its extensions, its CodeSystems and ValueSets, and the
OperationDefinitions of the Task operations. Other modules add theirs with `publish_*`."""

from typing import Any

from api.errors import HTTP_SLUGS
from api.fhir import narrative
from api.fhir import systems as s
from epu.errors import DomainError

PUBLISHER = "EPU"
DATE = "2026-12-01"
STATUS = "active"

# ---- extensions ------------------------------------------------------------------------------

EXTENSIONS: dict[str, dict[str, Any]] = {}


def publish_extension(
    url: str, value_type: str | None, context: str, description: str, parts: tuple = ()
) -> None:
    """An extension (simple: value_type; complex: parts of (name, type, description))."""
    EXTENSIONS[url] = {"type": value_type, "context": context, "description": description}
    EXTENSIONS[url]["parts"] = parts


for _url, _type, _context, _description in (
    (s.EXT_ALD, "boolean", "ServiceRequest", "Exam for an affection de longue durée (ALD)."),
    (s.EXT_PREVENTION, "boolean", "ServiceRequest", "Prevention exam."),
    (s.EXT_RENEWALS, "unsignedInt", "ServiceRequest", "Renewals allowed (0 to 12)."),
    (s.EXT_RENEWALS_LEFT, "unsignedInt", "ServiceRequest", "Renewals left (read only)."),
    (
        s.EXT_PATIENT_INSTRUCTION,
        "code",
        "ServiceRequest",
        f"A coded patient instruction (CI-SIS {s.INSTRUCTION_SYSTEM}, MED-1160 to MED-1165).",
    ),
    (s.EXT_SAMPLING, "string", "ServiceRequest", "Sampling instructions."),
    (s.EXT_ORIGIN, "code", "ServiceRequest", "Who added the line: prescriber | laboratory."),
    (
        s.EXT_LINE_STATUS,
        "code",
        "ServiceRequest",
        "The EPU line status: requested | done | not_done | removed | replaced (read only).",
    ),
    (s.EXT_LINE_REASON, "string", "ServiceRequest", "Why the line is not done (read only)."),
    (s.EXT_MODIFIED, "boolean", "Task", "The laboratory modified the prescription."),
    (
        s.EXT_EXECUTION_WITHHELD,
        "boolean",
        "Task",
        "The patient withheld the execution from the prescriber.",
    ),
):
    publish_extension(_url, _type, _context, _description)
for _url, _type, _context, _description in (  # eP-BIO line flags and proposals (issue 9)
    (s.EXT_WORK_ACCIDENT, "boolean", "ServiceRequest", "Related to a work accident (AT/MP)."),
    (s.EXT_NOT_REIMBURSABLE, "boolean", "ServiceRequest", "Not reimbursable."),
    (s.EXT_OFF_NOMENCLATURE, "boolean", "ServiceRequest", "Outside the NABM."),
    (s.EXT_URGENT_REASON, "string", "ServiceRequest", "Why the exam is urgent."),
    (
        f"{s.STRUCTURE}/proposal-mode",
        "code",
        "Task",
        "How a change is proposed: proposal | urgent | prescriber_unavailable.",
    ),
    (f"{s.STRUCTURE}/change-reason", "string", "Task.input", "Why this change is proposed."),
):
    publish_extension(_url, _type, _context, _description)
publish_extension(
    s.EXT_RESULT_RETURN,
    None,
    "ServiceRequest",
    "How the results go back: channels, phone, copies to other practitioners.",
    (
        ("channel", "code", "mssante | phone | patient_mssante"),
        ("phone", "string", "Phone number for the results."),
        ("copy-to", "Reference", "A practitioner (RPPS identifier) who gets a copy."),
    ),
)


def structure_definition(url: str) -> dict[str, Any] | None:
    found = EXTENSIONS.get(url)
    if found is None:
        return None
    ident = url.rsplit("/", 1)[1]
    elements = [{"id": "Extension", "path": "Extension", "short": found["description"]}]
    if found["parts"]:
        elements.append({"id": "Extension.extension", "path": "Extension.extension"})
        for name, kind, description in found["parts"]:
            at = f"Extension.extension:{name}"
            elements += [
                {
                    "id": at,
                    "path": "Extension.extension",
                    "sliceName": name,
                    "short": description,
                },
                {"id": f"{at}.url", "path": "Extension.extension.url", "fixedUri": name},
                {
                    "id": f"{at}.value[x]",
                    "path": "Extension.extension.value[x]",
                    "type": [{"code": kind}],
                },
            ]
        elements.append({"id": "Extension.url", "path": "Extension.url", "fixedUri": url})
        elements.append({"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"})
    else:
        elements.append({"id": "Extension.extension", "path": "Extension.extension", "max": "0"})
        elements.append({"id": "Extension.url", "path": "Extension.url", "fixedUri": url})
        elements.append(
            {
                "id": "Extension.value[x]",
                "path": "Extension.value[x]",
                "min": 1,
                "type": [{"code": found["type"]}],
            }
        )
    return {
        "resourceType": "StructureDefinition",
        "id": ident,
        "text": narrative.summary(f"Extension {url}: {found['description']}"),
        "url": url,
        "name": "".join(part.capitalize() for part in ident.split("-")),
        "title": found["description"],
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": found["description"],
        "fhirVersion": s.FHIR_VERSION,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": found["context"]}],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


# ---- code systems and value sets ---------------------------------------------------------------

PRESCRIPTION_STATUSES = {
    "active": "Active",
    "in_progress": "Prise en charge par un laboratoire",
    "completed": "Terminée",
    "cancelled": "Annulée par le prescripteur",
    "expired": "Expirée",
}
# Every events.type (epu.audit.record), in the words of the audit trail.
EVENT_TYPES = {
    "created": "Prescription created",
    "read": "Prescription read",
    "printed": "Ordonnance printed",
    "taken": "Taken charge of by a laboratory",
    "released": "Given back by the laboratory",
    "modified": "Modified by the laboratory",
    "line_done": "Exam done",
    "line_not_done": "Exam not done",
    "renewed": "Renewal started",
    "completed": "Completed",
    "cancelled": "Cancelled by the prescriber",
    "expired": "Expired",
    "sharing_withheld": "The patient withheld the execution from the prescriber",
    "failed_scans_limit": "Too many unknown codes scanned",
    "looked_up": "Listed by a patient lookup",
    "patient_lookup": "Patient lookup",
    "read_by_nurse": "Read by a nurse",
    "sampled": "Samples taken",
    "sampling_corrected": "Sampling corrected",
    "proposed": "Change proposed by the laboratory",
    "proposal_withdrawn": "Proposal withdrawn",
    "proposal_superseded": "Proposal superseded",
    "proposal_accepted": "Proposal accepted by the prescriber",
    "proposal_refused": "Proposal refused by the prescriber",
    "applied_urgent": "Change applied at once (urgency)",
    "applied_prescriber_unavailable": "Change applied (prescriber unavailable)",
}
# Problem codes of the API that are not a domain error's slug.
API_ISSUES = {
    "validation": "A field is invalid",
    "malformed_json": "Malformed request body",
    "invalid_request": "Invalid request",
    "invalid_idempotency_key": "Invalid Idempotency-Key",
    "no_code_found": "No prescription code found in the image",
    "several_codes": "Several prescription codes in the image",
    "unreadable_image": "Unreadable image",
    "missing_clinical_context": "Clinical information the exam needs is missing",
    "possible_duplicate": "Possible duplicate of an open prescription",
}
PROPOSAL_STATUSES = {
    "pending": "Waiting for the prescriber",
    "accepted": "Accepted by the prescriber",
    "refused": "Refused by the prescriber",
    "withdrawn": "Withdrawn by the laboratory",
    "superseded": "Superseded by a newer proposal",
    "applied": "Applied (urgency, or prescriber unavailable)",
}
PROPOSAL_CHANGES = {"add": "Add an exam", "remove": "Remove an exam", "replace": "Replace an exam"}
LINE_ORIGINS = {"prescriber": "Prescribed", "laboratory": "Added by the laboratory"}
LINE_STATUSES = {
    "requested": "Requested",
    "done": "Done",
    "not_done": "Not done",
    "removed": "Removed by the laboratory",
    "replaced": "Replaced by the laboratory",
}
RESULT_CHANNELS = {
    "mssante": "MSSanté to the prescriber",
    "phone": "Phone",
    "patient_mssante": "MSSanté to the patient",
}


def issue_codes() -> dict[str, str]:
    codes = dict(API_ISSUES)
    for slug in HTTP_SLUGS.values():
        codes.setdefault(slug, slug.replace("_", " ").capitalize())
    stack = list(DomainError.__subclasses__())
    while stack:
        kind = stack.pop()
        stack += kind.__subclasses__()
        if getattr(kind, "slug", None):
            codes.setdefault(kind.slug, getattr(kind, "title", kind.slug))
    return dict(sorted(codes.items()))


CODE_SYSTEMS = {
    s.CS_PRESCRIPTION_STATUS: ("EPU prescription statuses", lambda: PRESCRIPTION_STATUSES),
    s.CS_EVENT_TYPE: ("EPU audit event types", lambda: EVENT_TYPES),
    s.CS_ISSUE: ("EPU problem codes (the JSON API's and OperationOutcome details)", issue_codes),
    s.CS_LINE_ORIGIN: ("Who added a line", lambda: LINE_ORIGINS),
    s.CS_LINE_STATUS: ("EPU line statuses", lambda: LINE_STATUSES),
    s.CS_RESULT_CHANNEL: ("How results go back", lambda: RESULT_CHANNELS),
    f"{s.CODE_SYSTEM}/proposal-status": ("Proposal statuses", lambda: PROPOSAL_STATUSES),
    f"{s.CODE_SYSTEM}/proposal-change": ("Changes a proposal makes", lambda: PROPOSAL_CHANGES),
}


def code_system(url: str) -> dict[str, Any] | None:
    found = CODE_SYSTEMS.get(url)
    if found is None:
        return None
    title, concepts = found
    ident = url.rsplit("/", 1)[1]
    codes = concepts()
    return {
        "resourceType": "CodeSystem",
        "id": ident,
        "text": narrative.generated(*codes.items()),
        "url": url,
        "name": "".join(part.capitalize() for part in ident.split("-")),
        "title": title,
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "caseSensitive": True,
        "valueSet": url.replace("/CodeSystem/", "/ValueSet/"),
        "content": "complete",
        "count": len(codes),
        "concept": [{"code": code, "display": display} for code, display in codes.items()],
    }


def value_set(url: str) -> dict[str, Any] | None:
    """Each EPU code system has a value set of all its codes, at the same id."""
    system = url.replace("/ValueSet/", "/CodeSystem/")
    if system not in CODE_SYSTEMS:
        return None
    title, _ = CODE_SYSTEMS[system]
    ident = url.rsplit("/", 1)[1]
    return {
        "resourceType": "ValueSet",
        "id": ident,
        "text": narrative.summary(f"{title}: every code of {system}."),
        "url": url,
        "name": "".join(part.capitalize() for part in ident.split("-")),
        "title": title,
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "compose": {"include": [{"system": system}]},
    }


# ---- operations --------------------------------------------------------------------------------

OPERATIONS: dict[str, dict[str, Any]] = {}


def publish_operation(
    ident: str,
    code: str,
    resource: str,
    description: str,
    parameters: list[tuple],
    *,
    type_level: bool,
    instance: bool,
) -> None:
    """parameters: (name, use in|out, min, max, type or None, documentation, parts)."""
    OPERATIONS[ident] = {
        "code": code,
        "resource": resource,
        "description": description,
        "parameters": parameters,
        "type": type_level,
        "instance": instance,
    }


publish_operation(
    "Task-take",
    "take",
    "Task",
    "Take charge of a prescription (the laboratory scans its code). On the type the code is a "
    "parameter; on a Task, its id.",
    [
        ("code", "in", 0, "1", "string", "The code as scanned or typed (on the type).", ()),
        ("patient-ins", "in", 0, "1", "string", "The patient's INS, to check it.", ()),
        (
            "patient-objects-to-sharing",
            "in",
            0,
            "1",
            "boolean",
            "The patient withholds the execution from the prescriber.",
            (),
        ),
        ("return", "out", 1, "1", "Task", "The Task, now in progress.", ()),
        ("ins-match", "out", 0, "1", "boolean", "The INS given is the patient's.", ()),
    ],
    type_level=True,
    instance=True,
)
publish_operation(
    "Task-release",
    "release",
    "Task",
    "Give the prescription back: any laboratory may take it again. Returns the Task.",
    [("return", "out", 1, "1", "Task", "The Task, requested again.", ())],
    type_level=False,
    instance=True,
)
publish_operation(
    "Task-complete",
    "complete",
    "Task",
    "Report line outcomes; when no line is left requested this execution ends.",
    [
        (
            "line",
            "in",
            1,
            "*",
            None,
            "One line's outcome.",
            (
                ("request", "in", 1, "1", "Reference", "ServiceRequest/<id> of this Task.", ()),
                ("outcome", "in", 1, "1", "code", "done | not-done", ()),
                ("reason", "in", 0, "1", "string", "Required for not-done.", ()),
            ),
        ),
        ("return", "out", 1, "1", "Task", "The Task.", ()),
    ],
    type_level=False,
    instance=True,
)


def _parameter(item: tuple) -> dict[str, Any]:
    name, use, low, high, kind, documentation, parts = item
    parameter: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high}
    parameter["documentation"] = documentation
    if kind:
        parameter["type"] = kind
    if parts:
        parameter["part"] = [_parameter(part) for part in parts]
    return parameter


def operation_definition(ident: str) -> dict[str, Any] | None:
    found = OPERATIONS.get(ident)
    if found is None:
        return None
    return {
        "resourceType": "OperationDefinition",
        "id": ident,
        "text": narrative.summary(
            f"${found['code']} on {found['resource']}: {found['description']}"
        ),
        "url": f"{s.OPERATION}/{ident}",
        "name": "".join(part.capitalize() for part in ident.split("-")),
        "status": STATUS,
        "kind": "operation",
        "date": DATE,
        "publisher": PUBLISHER,
        "description": found["description"],
        "affectsState": True,
        "code": found["code"],
        "resource": [found["resource"]],
        "system": False,
        "type": found["type"],
        "instance": found["instance"],
        "parameter": [_parameter(item) for item in found["parameters"]],
    }


READERS = {
    "StructureDefinition": lambda ident: structure_definition(f"{s.STRUCTURE}/{ident}"),
    "CodeSystem": lambda ident: code_system(f"{s.CODE_SYSTEM}/{ident}"),
    "ValueSet": lambda ident: value_set(f"{s.VALUE_SET}/{ident}"),
    "OperationDefinition": operation_definition,
}


def definition(kind: str, ident: str) -> dict[str, Any] | None:
    reader = READERS.get(kind)
    return reader(ident) if reader else None


# ---- search parameters -------------------------------------------------------------------------

SEARCH_PARAMETERS = {
    "Resource-cursor": {
        "code": "_cursor",
        "base": "Resource",
        "type": "special",
        "description": "The opaque position of a page, from a `next` link: valid one day, for "
        "the client that got it, with the other parameters of the search given again.",
    },
    "ServiceRequest-presence": {
        "code": "presence",
        "base": "ServiceRequest",
        "type": "token",
        "description": "How the patient is present at a patient lookup (laboratories and nurses, "
        "with patient.identifier and patient.birthdate, in the body of POST "
        "/fhir/ServiceRequest/_search): carte_vitale | apcv | ins_datamatrix | declared.",
    },
}


def search_parameter(ident: str) -> dict[str, Any] | None:
    found = SEARCH_PARAMETERS.get(ident)
    if found is None:
        return None
    return {
        "resourceType": "SearchParameter",
        "id": ident,
        "text": narrative.summary(found["description"]),
        "url": f"{s.SEARCH_PARAMETER}/{ident}",
        "name": found["code"],
        "status": STATUS,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": found["description"],
        "code": found["code"],
        "base": [found["base"]],
        "type": found["type"],
    }


READERS["SearchParameter"] = search_parameter
