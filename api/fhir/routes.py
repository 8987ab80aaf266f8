"""The /fhir endpoints: each maps FHIR to the same use cases as the JSON API."""

from typing import Any

from flask import Blueprint, request

from api.auth import current_actor, require
from api.context import ins_key, settings
from api.extensions import db_session
from api.fhir import (
    capability,
    inbound,
    operations,
    outbound,
    pages,
    params,
    service_request_search,
    wire,
)
from api.fhir import proposals as fhir_proposals
from api.fhir.outcome import FhirError, Issue, register_blueprint_handlers
from api.fhir.systems import REQUISITION_SYSTEM
from api.laboratory.routes import take as scan
from epu import history, laboratory, prescriptions
from epu.actors import LAB, PRESCRIBER
from epu.errors import PrescriptionNotFound, ValidationFailed

MAX_TASK_CODES = 20
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
    return wire.respond(service_request_search.search(params.search_args("ServiceRequest")))


@post("/ServiceRequest/_search")
@require(PRESCRIBER, LAB)
def search_service_requests_by_post():
    """The same search, its parameters in the body: the only way to search by patient (INS)."""
    query = params.search_args("ServiceRequest", form=wire.form_body())
    return wire.respond(service_request_search.search(query))


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
    query = params.search_args("Task")
    if query.has("focus"):
        return fhir_proposals.search(query)
    if not query.has("group-identifier") and not query.has("_id"):
        raise params.bad(
            "group-identifier or _id (the prescription code) is required.", "group-identifier"
        )
    codes = None
    for name, system in (("group-identifier", REQUISITION_SYSTEM), ("_id", None)):
        if query.has(name):
            found = params.tokens(query, name, system or "")
            codes = found if codes is None else codes & found
    if len(codes) > MAX_TASK_CODES:
        raise params.bad(f"At most {MAX_TASK_CODES} codes per search.", "group-identifier")
    tasks = []
    for code in sorted(codes):
        try:
            view = prescriptions.status(session=db_session(), actor=current_actor(), code=code)
        except PrescriptionNotFound:
            continue
        if view["code"] not in {task["id"] for task in tasks}:
            tasks.append(outbound.task(view))
    return wire.respond(pages.listed(query, tasks, pages.cursor_state(query)))


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
    query = params.search_args("AuditEvent")
    entity = query.one("entity")
    if entity is None:
        raise params.bad("entity (Task/<code>) is required.", "entity")
    kind, _, code = entity.rpartition("/")
    items: list[dict[str, Any]] = []
    if kind in ("", "Task", f"{wire.base_url()}/Task") and code:
        try:
            items = history.history(
                session=db_session(), actor=current_actor(), code=code, limit=history.MAX_PAGE
            )["items"]
            code = prescriptions.parse_code(code)
        except PrescriptionNotFound:
            items = []
    resources = outbound.audit_events(code, items)
    return wire.respond(pages.listed(query, resources, pages.cursor_state(query)))
