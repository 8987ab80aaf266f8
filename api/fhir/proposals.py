"""Laboratories' proposals in FHIR: a proposal is a Task (code `change`, intent `proposal`)
whose `focus` is the prescription's Task and whose `input`s are the changes.

`$propose` on the prescription's Task creates it (mode proposal, urgent or
prescriber_unavailable, as the JSON API's PATCH); the prescriber answers with
`$accept-proposal` or `$refuse-proposal` on the proposal's Task, the laboratory may
`$withdraw-proposal`. The rules are the JSON API's: its schemas load the parameters and the same
use cases run.
"""

from typing import Any

from fhir.resources.R4B.parameters import Parameters
from flask import Blueprint, Flask, request
from marshmallow import ValidationError as MarshmallowError
from werkzeug.routing import BaseConverter

from api.auth import current_actor, require
from api.blueprint import shared_schema
from api.context import read_memory
from api.errors import flatten
from api.extensions import db_session
from api.fhir import conformance, outbound, pages, params, wire
from api.fhir import systems as s
from api.fhir.operations import refusal
from api.fhir.outcome import FhirError, Issue, invalid, register_blueprint_handlers
from api.laboratory.schemas import PatchIn
from api.prescriptions.schemas import AcceptIn, RefuseIn
from epu import prescriptions, proposals
from epu.actors import LAB, PRESCRIBER
from epu.errors import PrescriptionNotFound, ValidationFailed

blp = Blueprint("fhir_proposals", __name__, url_prefix="/fhir")
blp.before_request(wire.check_media_types)
register_blueprint_handlers(blp)

CS_PROPOSAL_STATUS = f"{s.CODE_SYSTEM}/proposal-status"
CS_CHANGE = f"{s.CODE_SYSTEM}/proposal-change"  # add | remove | replace
EXT_PROPOSAL_MODE = f"{s.STRUCTURE}/proposal-mode"  # valueCode proposal | urgent | ...
EXT_CHANGE_REASON = f"{s.STRUCTURE}/change-reason"  # on each input: valueString
TASK_STATUS = {
    "pending": "requested",
    "accepted": "accepted",
    "refused": "rejected",
    "withdrawn": "cancelled",
    "superseded": "cancelled",
    "applied": "completed",
}
PROPOSE_PARAMETERS = ("mode", "reason", "change")
CHANGE_PARTS = ("op", "line", "request", "reason")
URGENT_PRIORITIES = {"urgent", "asap", "stat"}


class ProposalIdConverter(BaseConverter):
    regex = r"P[0-9]{1,7}"


def init_app(app: Flask) -> None:
    app.url_map.converters["proposal"] = ProposalIdConverter
    app.register_blueprint(blp)


def post(rule: str):
    return blp.route(rule, methods=["POST"], provide_automatic_options=False)


def get(rule: str):
    return blp.route(rule, methods=["GET"], provide_automatic_options=False)


# ---- the operations --------------------------------------------------------------------------


@post("/Task/<code>/$propose")
@require(LAB)
def propose(code: str):
    normalised = prescriptions.parse_code(code)
    data, place = _propose_parameters(wire.json_body(), normalised)
    try:
        view = proposals.change(
            session=db_session(),
            actor=current_actor(),
            code=normalised,
            if_match=_if_match(),
            changes=data["changes"],
            mode=data["mode"],
            reason=data.get("reason"),
        )
    except ValidationFailed as error:
        raise refusal(error.errors, place) from error
    proposal = view["proposals"][-1]
    return wire.respond(proposal_task(view, proposal), ETag=wire.etag(view["version"]))


@post("/Task/<code>-<proposal:proposal_id>/$accept-proposal")
@require(PRESCRIBER)
def accept(code: str, proposal_id: str):
    comment = _comment(AcceptIn())
    view = proposals.accept(
        session=db_session(),
        actor=current_actor(),
        code=code,
        proposal_id=proposal_id,
        comment=comment,
    )
    return _answered(view, proposal_id)


@post("/Task/<code>-<proposal:proposal_id>/$refuse-proposal")
@require(PRESCRIBER)
def refuse(code: str, proposal_id: str):
    comment = _comment(RefuseIn())
    try:
        view = proposals.refuse(
            session=db_session(),
            actor=current_actor(),
            code=code,
            proposal_id=proposal_id,
            comment=comment,
        )
    except ValidationFailed as error:
        raise refusal(error.errors, lambda path: "Parameters.parameter") from error
    return _answered(view, proposal_id)


@post("/Task/<code>-<proposal:proposal_id>/$withdraw-proposal")
@require(LAB)
def withdraw(code: str, proposal_id: str):
    _parameters(wire.json_body(required=False), ())
    view = proposals.withdraw(
        session=db_session(), actor=current_actor(), code=code, proposal_id=proposal_id
    )
    return _answered(view, proposal_id)


@get("/Task/<code>-<proposal:proposal_id>")
@require(PRESCRIBER, LAB)
def read(code: str, proposal_id: str):
    if len(code) != 18 or "-" in code:  # a prescription code typed with hyphens: its Task
        from api.fhir.routes import read_task

        return read_task(f"{code}-{proposal_id}")
    view = prescriptions.read(
        session=db_session(), actor=current_actor(), code=code, memory=read_memory()
    )
    return _answered(view, proposal_id)


def search(query: params.Search):
    """GET /fhir/Task?focus=Task/<code>: the proposals on that prescription, oldest first."""
    if query.has("group-identifier") or query.has("_id"):
        raise params.bad("focus is not combined with group-identifier or _id.", "focus")
    kind, _, code = (query.one("focus") or "").rpartition("/")
    tasks: list[dict[str, Any]] = []
    if code and (kind == "Task" or kind.endswith("/fhir/Task")):
        try:
            view = prescriptions.read(
                session=db_session(), actor=current_actor(), code=code, memory=read_memory()
            )
        except PrescriptionNotFound:
            view = None
        if view is not None:
            tasks = [proposal_task(view, proposal) for proposal in view["proposals"]]
    return wire.respond(pages.listed(query, tasks, pages.cursor_state(query)))


def _answered(view: dict[str, Any], proposal_id: str):
    proposal = next((p for p in view["proposals"] if p["id"] == proposal_id), None)
    if proposal is None:
        raise FhirError(404, [Issue("No proposal with this id is available to you.", "not-found")])
    return wire.respond(proposal_task(view, proposal), ETag=wire.etag(view["version"]))


def _if_match() -> set[int] | None:
    """If-Match as FHIR clients send it (W/"3"); absent: any version."""
    header = request.headers.get("If-Match")
    if not header or header.strip() == "*":
        return None
    return {int(version) for version in wire._VERSION.findall(header)}


# ---- reading the parameters ------------------------------------------------------------------


def _parameters(body: dict[str, Any] | None, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    if body is None:
        return []
    wire.parse(Parameters, body, "Parameters")
    parameters = body.get("parameter") or []
    for index, parameter in enumerate(parameters):
        if parameter.get("name") not in allowed:
            raise invalid(f"Unexpected parameter {parameter.get('name')!r}.", _at(index))
    return parameters


def _comment(schema) -> str | None:
    parameters = _parameters(wire.json_body(required=False), ("comment",))
    raw = {}
    for index, parameter in enumerate(parameters):
        if "comment" in raw:
            raise invalid("Parameter 'comment' is given twice.", _at(index))
        raw["comment"] = _value(parameter, index, "valueString")
    try:
        return schema.load(raw).get("comment")
    except MarshmallowError as error:
        raise refusal(flatten(error.messages), lambda path: "Parameters") from error


def _propose_parameters(body: dict[str, Any], code: str):
    parameters = _parameters(body, PROPOSE_PARAMETERS)
    raw: dict[str, Any] = {"changes": []}
    positions: list[int] = []
    named: dict[str, int] = {}
    for index, parameter in enumerate(parameters):
        name = parameter["name"]
        if name == "change":
            raw["changes"].append(_change(parameter, index, code))
            positions.append(index)
            continue
        if name in named:
            raise invalid(f"Parameter {name!r} is given twice.", _at(index))
        named[name] = index
        raw[name] = _value(parameter, index, "valueCode" if name == "mode" else "valueString")

    def place(path: str) -> str:
        head = path.split(".")[0]
        if head.startswith("changes[") and head.endswith("]"):
            number = int(head[8:-1])
            return _at(positions[number]) if number < len(positions) else "Parameters"
        return _at(named[head]) if head in named else "Parameters"

    try:
        return shared_schema(PatchIn).load(raw), place
    except MarshmallowError as error:
        raise refusal(flatten(error.messages), place) from error


def _change(parameter: dict[str, Any], index: int, code: str) -> dict[str, Any]:
    change: dict[str, Any] = {}
    for part in parameter.get("part") or []:
        name = part.get("name")
        if name not in CHANGE_PARTS or name in change:
            raise invalid(f"Unexpected or repeated part {name!r}.", _at(index) + ".part")
        if name == "op":
            change["op"] = _value(part, index, "valueCode")
        elif name == "reason":
            change["reason"] = _value(part, index, "valueString")
        elif name == "line":
            target = (part.get("valueReference") or {}).get("reference", "")
            prefix = f"ServiceRequest/{outbound.service_request_id(code, '')}"
            if not target.startswith(prefix):
                raise invalid(
                    f"line refers to a ServiceRequest of this prescription ({prefix}L1...).",
                    _at(index) + ".part",
                )
            change["line_id"] = target.removeprefix(prefix)
        else:
            change["line"] = _requested_line(part.get("resource") or {}, index)
    return change


def _requested_line(resource: dict[str, Any], index: int) -> dict[str, Any]:
    """The proposed exam: code, priority, the line extensions and note; nothing else is read."""
    at = _at(index) + ".part.resource"
    if resource.get("resourceType") != "ServiceRequest":
        raise invalid("request is a ServiceRequest (intent proposal).", at)
    code = resource.get("code") or {}
    loincs = [c for c in code.get("coding") or [] if c.get("system") == s.LOINC]
    line: dict[str, Any] = {}
    if len(loincs) > 1:
        raise invalid("One LOINC code per ServiceRequest.", f"{at}.code.coding")
    if loincs and loincs[0].get("code") != s.FREE_TEXT_LOINC:
        line["loinc"] = loincs[0].get("code")
    elif code.get("text"):
        line["text"] = code["text"]
    else:
        raise invalid(
            f"The exam is a LOINC code, or {s.FREE_TEXT_LOINC} (or no coding) with code.text.",
            f"{at}.code",
        )
    line["urgent"] = resource.get("priority") in URGENT_PRIORITIES
    booleans = {
        s.EXT_ALD: "ald",
        s.EXT_PREVENTION: "prevention",
        s.EXT_WORK_ACCIDENT: "work_accident",
        s.EXT_NOT_REIMBURSABLE: "not_reimbursable",
        s.EXT_OFF_NOMENCLATURE: "off_nomenclature",
    }
    for extension in resource.get("extension") or []:
        url = extension.get("url")
        if url in booleans:
            line[booleans[url]] = _value(extension, index, "valueBoolean")
        elif url == s.EXT_URGENT_REASON:
            line["urgent_reason"] = _value(extension, index, "valueString")
    notes = [note.get("text", "") for note in resource.get("note") or []]
    if notes:
        line["comment"] = "\n".join(notes)
    return line


def _value(parameter: dict[str, Any], index: int, name: str) -> Any:
    if name not in parameter:
        raise invalid(
            f"{parameter.get('name') or parameter.get('url')!r} takes a {name}.", _at(index)
        )
    return parameter[name]


def _at(index: int) -> str:
    return f"Parameters.parameter[{index}]"


# ---- the proposal's Task ---------------------------------------------------------------------


def task_id(code: str, proposal_id: str) -> str:
    return f"{code}-{proposal_id}"


def proposal_task(view: dict[str, Any], proposal: dict[str, Any]) -> dict[str, Any]:
    code = view["code"]
    contained: list[dict[str, Any]] = []
    inputs = []
    for number, change in enumerate(proposal["changes"], 1):
        if change.get("line"):
            contained.append(_proposed_request(view, change, f"change-{number}"))
            target = {"reference": f"#change-{number}"}
        else:
            target = outbound.reference(code, change["line_id"])
        inputs.append(
            {
                "extension": [{"url": EXT_CHANGE_REASON, "valueString": change["reason"]}],
                "type": {"coding": [{"system": CS_CHANGE, "code": change["op"]}]},
                "valueReference": target,
            }
        )
    if contained:
        contained.insert(0, _patient(view["patient"]))
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id(code, proposal["id"]),
        "meta": {"versionId": str(view["version"]), "lastUpdated": view["updated_at"]},
        "contained": contained,
        "extension": [{"url": EXT_PROPOSAL_MODE, "valueCode": proposal["mode"]}],
        "groupIdentifier": {"system": s.REQUISITION_SYSTEM, "value": code},
        "status": TASK_STATUS[proposal["status"]],
        "businessStatus": {"coding": [{"system": CS_PROPOSAL_STATUS, "code": proposal["status"]}]},
        "intent": "proposal",
        "code": {"coding": [{"system": s.TASK_CODE, "code": "change"}]},
        "focus": {"reference": f"Task/{code}"},
        "authoredOn": proposal["created_at"],
        "lastModified": proposal["answered_at"] or proposal["created_at"],
        "owner": {
            "type": "Practitioner",
            "identifier": {"system": s.RPPS, "value": view["prescriber"]["rpps"]},
            "display": view["prescriber"]["name"],
        },
        "input": inputs,
    }
    if proposal["laboratory"]:
        laboratory = proposal["laboratory"]
        resource["requester"] = {
            "type": "Organization",
            "identifier": {"system": s.FINESS, "value": laboratory["finess"]},
            "display": laboratory["name"],
        }
    if proposal["reason"]:
        resource["reasonCode"] = {"text": proposal["reason"]}
    if proposal["comment"]:
        resource["note"] = [{"text": proposal["comment"]}]
    return {key: value for key, value in resource.items() if value not in (None, [])}


def _patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "patient",
        "gender": patient["sex"],
        "birthDate": patient["birth_date"],
    }


def _proposed_request(view: dict[str, Any], change: dict[str, Any], ident: str) -> dict[str, Any]:
    line = change["line"]
    if line.get("loinc"):
        code = {"coding": [{"system": s.LOINC, "code": line["loinc"]}]}
    else:
        coding = {"system": s.LOINC, "code": s.FREE_TEXT_LOINC, "display": s.FREE_TEXT_DISPLAY}
        code = {"coding": [coding], "text": line["text"]}
    extensions = [
        {"url": url, "valueBoolean": bool(line.get(key))}
        for url, key in (
            (s.EXT_ALD, "ald"),
            (s.EXT_PREVENTION, "prevention"),
            (s.EXT_WORK_ACCIDENT, "work_accident"),
            (s.EXT_NOT_REIMBURSABLE, "not_reimbursable"),
            (s.EXT_OFF_NOMENCLATURE, "off_nomenclature"),
        )
    ]
    if line.get("urgent_reason"):
        extensions.append({"url": s.EXT_URGENT_REASON, "valueString": line["urgent_reason"]})
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": ident,
        "extension": extensions,
        "status": "draft",
        "intent": "proposal",
        "priority": "urgent" if line.get("urgent") else "routine",
        "code": code,
        "subject": {"reference": "#patient"},
        "requisition": {"system": s.REQUISITION_SYSTEM, "value": view["code"]},
    }
    if change["op"] == "replace":
        resource["replaces"] = [outbound.reference(view["code"], change["line_id"])]
    if line.get("comment"):
        resource["note"] = [{"text": line["comment"]}]
    return resource


# ---- OperationDefinitions --------------------------------------------------------------------

OPERATIONS = {
    "propose": (
        "Propose changes to a prescription's lines (laboratory holding it), or apply them at "
        "once in an emergency or when the prescriber cannot be reached (art. L6211-8 CSP). "
        "Answers the proposal's Task (201).",
        False,
        [
            ("mode", "in", 0, "1", "code", "proposal (default) | urgent | prescriber_unavailable"),
            ("reason", "in", 0, "1", "string", "Required for prescriber_unavailable"),
            ("change", "in", 1, "*", None, "One change: parts op, line, request, reason"),
            ("return", "out", 1, "1", "Task", "The proposal"),
        ],
    ),
    "accept-proposal": (
        "The prescriber accepts a pending proposal: its changes apply now, in one transaction. "
        "Accepting twice is harmless. Answers the proposal's Task.",
        False,
        [
            ("comment", "in", 0, "1", "string", "The prescriber's comment (up to 500)"),
            ("return", "out", 1, "1", "Task", "The proposal"),
        ],
    ),
    "refuse-proposal": (
        "The prescriber refuses a pending proposal, saying why: nothing changes and the "
        "laboratory carries out the prescription as written. Answers the proposal's Task.",
        False,
        [
            ("comment", "in", 1, "1", "string", "Why (1 to 500 characters)"),
            ("return", "out", 1, "1", "Task", "The proposal"),
        ],
    ),
    "withdraw-proposal": (
        "The laboratory withdraws its pending proposal. Answers the proposal's Task.",
        False,
        [("return", "out", 1, "1", "Task", "The proposal")],
    ),
}


@get("/OperationDefinition/Task-<name>")
def operation_definition(name: str):
    if name not in OPERATIONS:  # the other Task operations are published by conformance
        other = conformance.definition("OperationDefinition", f"Task-{name}")
        if other is None:
            raise FhirError(404, [Issue("No OperationDefinition with this id.", "not-found")])
        return wire.respond(other)
    return wire.respond(definition(name))


def definition(name: str) -> dict[str, Any]:
    description, affects_state, parameters = OPERATIONS[name]
    return {
        "resourceType": "OperationDefinition",
        "id": f"Task-{name}",
        "url": f"{s.OPERATION}/Task-{name}",
        "name": "".join(part.capitalize() for part in name.split("-")),
        "status": "active",
        "kind": "operation",
        "description": description,
        "affectsState": True,
        "code": name,
        "resource": ["Task"],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            {
                "name": pname,
                "use": use,
                "min": low,
                "max": high,
                **({"type": kind} if kind else {}),
                "documentation": doc,
                **(
                    {
                        "part": [
                            {
                                "name": "op",
                                "use": "in",
                                "min": 1,
                                "max": "1",
                                "type": "code",
                                "documentation": "add | remove | replace",
                            },
                            {
                                "name": "line",
                                "use": "in",
                                "min": 0,
                                "max": "1",
                                "type": "Reference",
                                "documentation": "remove, replace: ServiceRequest/<code>-<line>",
                            },
                            {
                                "name": "request",
                                "use": "in",
                                "min": 0,
                                "max": "1",
                                "type": "ServiceRequest",
                                "documentation": "add, replace: the proposed exam",
                            },
                            {
                                "name": "reason",
                                "use": "in",
                                "min": 1,
                                "max": "1",
                                "type": "string",
                                "documentation": "Why this change",
                            },
                        ]
                    }
                    if pname == "change"
                    else {}
                ),
            }
            for pname, use, low, high, kind, doc in parameters
        ],
    }
