"""GET /fhir/metadata: exactly what this FHIR interface supports, and nothing more."""

from typing import Any

from api.fhir import systems as s
from api.fhir.subscription_capability import subscription_resources

SOFTWARE_VERSION = "1.0.0"
DATE = "2026-01-01"

REST_DOCUMENTATION = f"""\
FHIR R4 interface of EPU (e-prescription unifiée), over the same rules, accounts and database as
the JSON API (/api/v1). Resources are validated with the FHIR R4B models of fhir.resources; the
JSON of every resource used here is identical in FHIR 4.0.1, which is declared.

* **Security**: OAuth2 client credentials (POST /oauth/token), then `Authorization: Bearer`,
  the same tokens as the JSON API. A prescriber sees its own prescriptions, a laboratory those
  it holds; anything else is 404, exactly like an unknown id.
* **A prescription** is one ServiceRequest per line (id `<code>-<line>`, e.g.
  `01S2TBPZ2JCNZZYGHZ-L1`), sharing `requisition` = the prescription code (system
  `{s.REQUISITION_SYSTEM}`), and one Task (id = the code, `groupIdentifier` = the code).
* **Creation**: POST a transaction Bundle to the base holding the ServiceRequests of one
  prescription (request POST ServiceRequest) and optionally one Patient entry (POST Patient)
  with the INS (system `{s.INS_NIR}`): the INS is pseudonymised, never stored nor given back,
  and a Patient may carry nothing but `identifier` (INS), `gender` and `birthDate`. The patient
  may be contained in each ServiceRequest instead (`subject` = `#id`). The answer is a
  transaction-response Bundle: `201 Created` with the location of each ServiceRequest, and the
  JSON API's warnings as an OperationOutcome in `response.outcome` of the entry concerned.
* **Retries**: `Idempotency-Key` header as in the JSON API (same key and content: the first
  answer is replayed, with `Idempotent-Replayed: true`; another content: 422). Conditional
  create (`If-None-Exist` header or `entry.request.ifNoneExist`):
  `requisition={s.REQUISITION_SYSTEM}|<code>` (or `identifier=` with that system) answers the
  existing prescription with `200 OK` entries (entry n is line L<n>) without creating;
  `identifier=<system>|<value>` of the prescriber software, or the same identifier given as
  `Bundle.identifier` or `ServiceRequest.identifier`, makes the creation idempotent for ever for
  this client: a retry answers `200 OK` entries, another content under the same identifier
  is refused (422, as a reused Idempotency-Key); with such an identifier an Idempotency-Key
  header is not used. That identifier is not given back on reads nor searchable.
* **Modifications**: cancelling is done through the JSON API only. Laboratories use the Task
  operations `$take`, `$release` and `$complete`; they propose changes to the lines (add,
  remove, replace) with `$propose`, which the prescriber answers with `$accept-proposal` or
  `$refuse-proposal` on the proposal's Task (code `change`, `focus` the prescription's Task,
  found with `Task?focus=Task/<code>`); see the README.
* **Errors** are OperationOutcome resources with the matching HTTP status; `details` carries
  the JSON API's problem code (system `{s.CS_ISSUE}`).
* **Searches are strict**: a search parameter, modifier or prefix this server does not apply
  answers 400 with an OperationOutcome naming it (a filter silently dropped would show
  another patient's exams). `Prefer: handling=lenient` ignores them instead, and leaves them
  out of the `self` link. Token parameters take comma-separated OR values; a repeated
  parameter is ANDed. Dates take the prefixes eq, ne, gt, lt, ge, le, sa, eb; a date or a
  date-time without a time zone is read in Europe/Paris (a day is a Paris day).
* **The INS never goes in a URL**: a GET carrying an INS answers 400. Search by patient with
  `POST /fhir/ServiceRequest/_search` and `patient.identifier` (or `subject:identifier`)
  `={s.INS_NIR}|<INS>` as application/x-www-form-urlencoded: a prescriber gets its own
  prescriptions for that patient; paging links then carry an opaque cursor, never the INS.
* **Paging**: `_count` (default 50, at most 200: a larger value gives pages of 200) counts
  entries; `next` links go on, if needed in the middle of a prescription, with an opaque
  `_cursor` (valid one day, for the client that got it). `_count=0` or `_summary=count`
  answers `total` only; `_total=accurate` (or `estimate`) fills `total`; `_totalMethod` is
  accepted and has no effect. `_elements` gives the elements named plus the mandatory ones,
  marked SUBSETTED; `_summary` other than `count` and `false` is refused (400).
"""

SERVICE_REQUEST_DOCUMENTATION = f"""\
One line of a prescription. `status`: active (requested), completed (done), revoked (not done,
removed or replaced by the laboratory, or a requested line of a cancelled or expired
prescription), unknown (the patient withheld the execution from the prescriber). A replacing
line has `replaces`. `code`: LOINC (`{s.LOINC}`) with the French display of the catalogue, or
`code.text` only for a free-text exam. A free-text exam is coded LOINC `{s.FREE_TEXT_LOINC}`
with the exam in `code.text`, as the ANS profile FrActeBiologiePrescrit does (read back the same
way; `code.text` alone is also accepted). `priority` urgent (asap and stat are read as urgent)
or routine; an urgent line says why in `{s.EXT_URGENT_REASON}` (valueString, required).
`requester`: the prescriber (identifier system `{s.RPPS}`). `subject`: a contained
Patient with sex and birth date only. `reasonCode.text`: the clinical context (the same on every
line). `supportingInfo`: contained Observations (LOINC code and value) of clinical information
the exam needs. `note`: the comment. `patientInstruction`: the labels of the coded patient
instructions (on input, codes MED-1160 to MED-1165 or their labels, one per line, are accepted
when the extension is absent). `occurrencePeriod`: from creation to expiry. `performer`: the
laboratory, when one holds or carried it out.

Extensions: `{s.EXT_ALD}` (valueBoolean, exam for an ALD), `{s.EXT_PREVENTION}` (valueBoolean),
and, as the eP-BIO content model asks (each false when absent), `{s.EXT_WORK_ACCIDENT}`
(valueBoolean, related to a work accident or an occupational disease), `{s.EXT_NOT_REIMBURSABLE}`
(valueBoolean) and `{s.EXT_OFF_NOMENCLATURE}` (valueBoolean, outside the NABM),
`{s.EXT_RENEWALS}` (valueUnsignedInt 0-12), `{s.EXT_PATIENT_INSTRUCTION}` (valueCode, repeated,
CI-SIS `{s.INSTRUCTION_SYSTEM}`), `{s.EXT_SAMPLING}` (valueString), `{s.EXT_RESULT_RETURN}`
(sub-extensions `channel` valueCode mssante|phone|patient_mssante, `phone` valueString,
`copy-to` valueReference with an RPPS identifier; the same on every line). Read only:
`{s.EXT_RENEWALS_LEFT}` (valueUnsignedInt), `{s.EXT_ORIGIN}` (valueCode prescriber|laboratory),
`{s.EXT_LINE_STATUS}` (valueCode requested|done|not_done|removed|replaced) and
`{s.EXT_LINE_REASON}` (valueString). Unknown extensions are ignored; modifierExtension and any
element not listed here are refused (422).

Search: `requisition` or `_id` (at most 20 prescriptions) read the prescriptions named (recorded
in their history, like a read; laboratories search only this way); without them (prescribers
only) the caller's own ServiceRequests, oldest update first, `_count` a page."""

TASK_DOCUMENTATION = f"""\
The execution of a prescription (id = the code). `status`: requested (active), in-progress
(held by a laboratory), completed, cancelled (by the prescriber, or expired: then
`statusReason` and `businessStatus` say `expired`). `businessStatus` carries the EPU status
(`{s.CS_PRESCRIPTION_STATUS}`), `owner` the laboratory (identifier system `{s.FINESS}`),
`basedOn` the ServiceRequests and `focus` the first one. Read only extensions:
`{s.EXT_MODIFIED}` and `{s.EXT_EXECUTION_WITHHELD}` (valueBoolean). A read answers
`ETag: W/"<version>"`; `If-None-Match` with it answers 304 without a body."""

AUDIT_DOCUMENTATION = f"""\
The history of a prescription, oldest first: search `entity=Task/<code>`. `subtype` is the EPU
event (`{s.CS_EVENT_TYPE}`: created, read, taken, released, modified, line_done,
line_not_done, renewed, completed, cancelled, expired, sharing_withheld), `entity.detail` its
details. Who reads it and what is hidden follow the JSON API's history."""

OPERATIONS = {
    "take": "Take charge of a prescription (scan). On the type, parameter `code` (valueString "
    "as scanned or typed, or valueIdentifier); on a Task, its id. Optional `patient-ins` "
    "(valueString or valueIdentifier) and `patient-objects-to-sharing` (valueBoolean). Answers "
    "Parameters: `return` (the Task) and `ins-match` when the INS was checked. Unknown codes "
    "count towards the failed-scan limit (429), as in the JSON API.",
    "release": "Give the prescription back: any laboratory may take it again. Answers the Task.",
    "complete": "Report line outcomes: repeated parameter `line` with parts `request` "
    "(valueReference ServiceRequest/<id>), `outcome` (valueCode done | not-done) and `reason` "
    "(valueString, required for not-done). When no line is left requested this execution ends "
    "(renewals start again, or the Task is completed). Answers the Task.",
}


def proposal_operations() -> dict[str, str]:
    from api.fhir.proposals import OPERATIONS as PROPOSALS  # its routes import this module

    return {name: description for name, (description, _, _) in PROPOSALS.items()}


def _param(name: str, kind: str, documentation: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": documentation}


def statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": DATE,
        "publisher": "EPU",
        "kind": "instance",
        "software": {"name": "EPU - e-prescription unifiée", "version": SOFTWARE_VERSION},
        "implementation": {"description": "EPU FHIR R4 interface", "url": base},
        "fhirVersion": s.FHIR_VERSION,
        "format": ["json", s.FHIR_JSON],
        "rest": [_rest(base)],
    }


def _rest(base: str) -> dict[str, Any]:
    token_url = base.removesuffix("/fhir") + "/oauth/token"
    return {
        "mode": "server",
        "documentation": REST_DOCUMENTATION,
        "security": {
            "extension": [
                {"url": s.SMART_OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}
            ],
            "cors": False,
            "service": [{"coding": [{"system": s.SECURITY_SERVICE, "code": "OAuth"}]}],
            "description": f"OAuth2 client credentials at {token_url}; send the access token "
            "as `Authorization: Bearer`. Only /fhir/metadata is open without a token.",
        },
        "resource": [_service_request(), _task(), _audit_event(), *subscription_resources()],
        "interaction": [
            {
                "code": "transaction",
                "documentation": "Creates one prescription from its ServiceRequests "
                "(prescribers only).",
            }
        ],
    }


def _service_request() -> dict[str, Any]:
    return {
        "type": "ServiceRequest",
        "documentation": SERVICE_REQUEST_DOCUMENTATION,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            _param(
                "requisition", "token", f"The prescription code (system {s.REQUISITION_SYSTEM})."
            ),
            _param(
                "requester",
                "reference",
                "The prescriber: `requester:identifier="
                f"{s.RPPS}|<RPPS>`, or the RPPS alone. Prescribers only see their own.",
            ),
            _param("status", "token", "active, completed, revoked, unknown (several: comma)."),
            _param("_id", "token", "<code>-<line> (several: comma)."),
            _param("code", "token", f"The exam's LOINC code (`{s.LOINC}|<code>` or the code)."),
            _param(
                "patient.identifier",
                "token",
                f"The patient's INS (`{s.INS_NIR}|<INS>`, also `subject:identifier`): only in "
                "the body of POST /fhir/ServiceRequest/_search, never in a URL.",
            ),
            _param(
                "_lastUpdated",
                "date",
                "Prefixes eq, ne, gt, lt, ge, le, sa, eb; a date or date-time without a zone is "
                "read in Europe/Paris; may repeat for a range.",
            ),
        ],
    }


def _task() -> dict[str, Any]:
    return {
        "type": "Task",
        "documentation": TASK_DOCUMENTATION,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "conditionalRead": "not-match",
        "searchParam": [
            _param("group-identifier", "token", "The prescription code (required)."),
            _param(
                "focus",
                "reference",
                "Task/<code>: the laboratories' proposals on this prescription (Task code "
                "change), instead of group-identifier.",
            ),
        ],
        "operation": [
            {
                "name": name,
                "definition": f"{s.OPERATION}/Task-{name}",
                "documentation": documentation,
            }
            for name, documentation in {**OPERATIONS, **proposal_operations()}.items()
        ],
    }


def _audit_event() -> dict[str, Any]:
    return {
        "type": "AuditEvent",
        "documentation": AUDIT_DOCUMENTATION,
        "interaction": [{"code": "search-type"}],
        "searchParam": [_param("entity", "reference", "Task/<code> (required).")],
    }
