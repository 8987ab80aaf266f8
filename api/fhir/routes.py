"""The /fhir endpoints: each maps FHIR to the same use cases as the JSON API."""

from datetime import datetime
from typing import Any

from flask import Blueprint, request

from api.auth import current_actor, require
from api.context import ins_key, settings
from api.errors import Problem
from api.extensions import db_session
from api.fhir import capability, inbound, operations, outbound, params, wire
from api.fhir.outcome import FhirError, Issue, register_blueprint_handlers
from api.fhir.systems import REQUISITION_SYSTEM, RPPS
from api.laboratory.routes import take as scan
from epu import history, laboratory, prescriptions, search
from epu.actors import LAB, PRESCRIBER
from epu.errors import PrescriptionNotFound, ValidationFailed
from epu.statuses import ACTIVE, IN_PROGRESS

blp = Blueprint("fhir", __name__, url_prefix="/fhir")
blp.before_request(wire.check_media_types)
register_blueprint_handlers(blp)


def get(rule: str):
    """No automatic OPTIONS answers: everything from /fhir is FHIR (OPTIONS gets 405)."""
    return blp.route(rule, methods=["GET"], provide_automatic_options=False)


def post(rule: str):
    return blp.route(rule, methods=["POST"], provide_automatic_options=False)


def not_found(what: str) -> FhirError:
    return FhirError(404, [Issue(f"No {what} with this id is available to you.", "not-found")])


@get("/metadata")
def metadata():
    return wire.respond(capability.statement(wire.base_url()))


# ---- creation --------------------------------------------------------------------------------


@post("")
@post("/")
@require(PRESCRIBER)
def transaction():
    actor = current_actor()
    tx = inbound.transaction(wire.json_body(), actor, request.headers.get("If-None-Exist"))
    if tx.requisition:
        existing = _existing(tx)
        if existing is not None:
            bundle = outbound.transaction_response(wire.base_url(), tx.kinds, existing, "200 OK")
            return wire.respond(bundle)
    header_key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
    key = f"fhir-identifier:{tx.client_identifier}" if tx.client_identifier else header_key
    try:
        created = prescriptions.create(
            session=db_session(),
            actor=actor,
            data=tx.data,
            ins_key=ins_key(),
            validity_days=settings().validity_days,
            idempotency_key=key,
        )
    except ValidationFailed as error:
        raise tx.layout.error(error.errors) from error
    status = "200 OK" if created.replayed and tx.client_identifier else "201 Created"
    headers = {"Idempotent-Replayed": "true"} if created.replayed else {}
    warnings = created.body.get("warnings", [])
    base = wire.base_url()
    bundle = outbound.transaction_response(base, tx.kinds, created.body, status, warnings)
    return wire.respond(bundle, **headers)


def _existing(tx: inbound.Transaction) -> dict[str, Any] | None:
    """The caller's prescription named in If-None-Exist, or None (then it is created)."""
    try:
        view = prescriptions.status(
            session=db_session(), actor=current_actor(), code=tx.requisition
        )
    except PrescriptionNotFound:
        return None
    have = {line["id"] for line in view["lines"]}
    if any(f"L{n}" not in have for n in range(1, len(tx.layout.line_entries) + 1)):
        raise FhirError(
            412,
            [Issue("The requisition exists but does not hold these ServiceRequests.", "conflict")],
        )
    return view


# ---- ServiceRequest --------------------------------------------------------------------------


@get("/ServiceRequest/<resource_id>")
@require(PRESCRIBER, LAB)
def read_service_request(resource_id: str):
    code, _, line_id = resource_id.rpartition("-")
    if not code or not line_id:
        raise not_found("ServiceRequest")
    view = prescriptions.read(session=db_session(), actor=current_actor(), code=code)
    line = next((line for line in view["lines"] if line["id"] == line_id), None)
    if line is None:
        raise not_found("ServiceRequest")
    resource = outbound.service_request(view, line)
    return wire.respond(resource, ETag=wire.etag(view["version"]))


@get("/ServiceRequest")
@require(PRESCRIBER, LAB)
def search_service_requests():
    actor = current_actor()
    args = params.search_args("ServiceRequest")
    statuses = params.request_statuses(args)
    updated = params.last_updated(args)
    limit = params.count(args)
    cursor = params.one(args, "_cursor")
    requester = _requester(args)
    requisition = params.one(args, "requisition")
    next_cursor = None
    if requisition is not None:
        views = _by_requisition(params.token(requisition, REQUISITION_SYSTEM))
    elif actor.is_lab:
        raise Problem(403, "Laboratories search ServiceRequests by requisition only.")
    elif requester not in (None, actor.identifier):
        views = []
    else:
        try:
            page = search.own_prescriptions(
                session=db_session(),
                actor=actor,
                statuses=_prescription_statuses(statuses),
                updated=updated,
                limit=limit,
                cursor=cursor,
            )
        except ValidationFailed as error:
            raise params.bad("_cursor is not one this server gave.", "_cursor") from error
        views, next_cursor = page["items"], page["next_cursor"]
    resources = [
        resource
        for view in views
        if (requester is None or view["prescriber"]["rpps"] == requester)
        and params.holds(_moment(view["updated_at"]), updated)
        for resource in outbound.service_requests(view)
        if statuses is None or resource.status in statuses
    ]
    bundle = outbound.searchset(
        wire.base_url(),
        resources,
        params.link("ServiceRequest", args, _cursor=cursor),
        params.link("ServiceRequest", args, _cursor=next_cursor) if next_cursor else None,
        total=len(resources) if cursor is None and next_cursor is None else None,
    )
    return wire.respond(bundle)


def _requester(args: dict[str, list[str]]) -> str | None:
    by_identifier = params.one(args, "requester:identifier")
    plain = params.one(args, "requester")
    if by_identifier is not None and plain is not None:
        raise params.bad("Give requester or requester:identifier, not both.", "requester")
    if by_identifier is not None:
        return params.token(by_identifier, RPPS) or "-"  # another system: matches nothing
    if plain is not None:
        return plain.removeprefix("Practitioner/")
    return None


def _by_requisition(code: str | None) -> list[dict[str, Any]]:
    if code is None:
        return []
    try:
        return [prescriptions.read(session=db_session(), actor=current_actor(), code=code)]
    except PrescriptionNotFound:
        return []


def _prescription_statuses(statuses: set[str] | None) -> set[str] | None:
    """A first cut in the database; the exact status of each line is checked afterwards."""
    if statuses is None or statuses - {"active", "draft", "on-hold", "entered-in-error"}:
        return None
    return {ACTIVE, IN_PROGRESS} if "active" in statuses else set()


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- Task ------------------------------------------------------------------------------------


@get("/Task/<code>")
@require(PRESCRIBER, LAB)
def read_task(code: str):
    try:
        view = prescriptions.status(
            session=db_session(),
            actor=current_actor(),
            code=code,
            if_none_match=wire.domain_if_none_match(),
        )
    except prescriptions.NotModified:
        return wire.not_modified()
    return wire.respond(outbound.task(view), ETag=wire.etag(view["version"]))


@get("/Task")
@require(PRESCRIBER, LAB)
def search_tasks():
    args = params.search_args("Task")
    value = params.one(args, "group-identifier")
    if value is None:
        raise params.bad(
            "group-identifier (the prescription code) is required.", "group-identifier"
        )
    code = params.token(value, REQUISITION_SYSTEM)
    tasks = []
    if code is not None:
        try:
            view = prescriptions.status(session=db_session(), actor=current_actor(), code=code)
            tasks.append(outbound.task(view))
        except PrescriptionNotFound:
            pass
    self_url = params.link("Task", args)
    return wire.respond(outbound.searchset(wire.base_url(), tasks, self_url, None, len(tasks)))


@post("/Task/$take")
@require(LAB)
def take_type():
    return _take(None)


@post("/Task/<code>/$take")
@require(LAB)
def take_task(code: str):
    return _take(code)


def _take(code: str | None):
    data, place = operations.take(wire.json_body(required=code is None), code)
    try:
        view = scan(data["code"], data.get("patient_ins"), data["patient_objects_to_sharing"])
    except ValidationFailed as error:
        raise operations.refusal(error.errors, place) from error
    output = operations.take_output(outbound.task(view), view["patient"].get("ins_match"))
    return wire.respond(output, ETag=wire.etag(view["version"]))


@post("/Task/<code>/$release")
@require(LAB)
def release_task(code: str):
    operations.no_parameters(wire.json_body(required=False))
    view = laboratory.release(session=db_session(), actor=current_actor(), code=code)
    return wire.respond(outbound.task(view), ETag=wire.etag(view["version"]))


@post("/Task/<code>/$complete")
@require(LAB)
def complete_task(code: str):
    normalised = prescriptions.parse_code(code)
    outcomes, place = operations.complete(wire.json_body(), normalised)
    try:
        view = laboratory.report(
            session=db_session(), actor=current_actor(), code=normalised, outcomes=outcomes
        )
    except ValidationFailed as error:
        raise operations.refusal(error.errors, place) from error
    return wire.respond(outbound.task(view), ETag=wire.etag(view["version"]))


# ---- AuditEvent ------------------------------------------------------------------------------


@get("/AuditEvent")
@require(PRESCRIBER, LAB)
def search_audit_events():
    args = params.search_args("AuditEvent")
    entity = params.one(args, "entity")
    if entity is None:
        raise params.bad("entity (Task/<code>) is required.", "entity")
    kind, _, code = entity.rpartition("/")
    items: list[dict[str, Any]] = []
    cursor, next_cursor = params.one(args, "_cursor"), None
    if kind in ("", "Task", f"{wire.base_url()}/Task") and code:
        try:
            page = history.history(
                session=db_session(),
                actor=current_actor(),
                code=code,
                limit=params.count(args),
                cursor=cursor,
            )
            items, next_cursor = page["items"], page["next_cursor"]
            code = prescriptions.parse_code(code)
        except PrescriptionNotFound:
            items = []
        except ValidationFailed as error:
            raise params.bad("_cursor is not one this server gave.", "_cursor") from error
    resources = outbound.audit_events(code, items)
    bundle = outbound.searchset(
        wire.base_url(),
        resources,
        params.link("AuditEvent", args, _cursor=cursor),
        params.link("AuditEvent", args, _cursor=next_cursor) if next_cursor else None,
        total=len(resources) if cursor is None and next_cursor is None else None,
    )
    return wire.respond(bundle)
