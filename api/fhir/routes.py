"""The /fhir endpoints: each maps FHIR to the same use cases as the JSON API."""

import contextlib
from typing import Any

from flask import Blueprint, request

from api.auth import current_actor, require
from api.context import ins_key, read_memory, settings
from api.extensions import db_session
from api.fhir import (
    capability,
    conformance,
    inbound,
    operations,
    outbound,
    pages,
    params,
    prefer,
    service_request_search,
    wire,
)
from api.fhir import proposals as fhir_proposals
from api.fhir.outcome import FhirError, Issue, register_blueprint_handlers
from api.fhir.systems import REQUISITION_SYSTEM
from api.laboratory.routes import take as scan
from epu import history, laboratory, prescriptions
from epu.actors import LAB, NURSE, PRESCRIBER
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


@get(
    "/<any(StructureDefinition, CodeSystem, ValueSet, OperationDefinition, SearchParameter):kind>"
    "/<ident>"
)
def definition(kind: str, ident: str):
    """What EPU defines (open, like the CapabilityStatement): every canonical it gives."""
    resource = conformance.definition(kind, ident)
    if resource is None:
        raise not_found(kind)
    return wire.respond(resource)


# ---- creation --------------------------------------------------------------------------------


@post("")
@post("/")
@require(PRESCRIBER)
def transaction():
    actor = current_actor()
    tx = inbound.transaction(wire.json_body(), actor, request.headers.get("If-None-Exist"))
    code = _existing(tx)
    if code is not None:
        return _transaction_answer(tx, code, None, "200 OK", {})
    header_key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
    try:
        created = prescriptions.create(
            session=db_session(),
            actor=actor,
            data=tx.data,
            ins_key=ins_key(),
            validity_days=settings().validity_days,
            idempotency_key=None if tx.client_identifier else header_key,
            order_identifier=tx.client_identifier,
        )
    except ValidationFailed as error:
        raise tx.layout.error(error.errors) from error
    status = "200 OK" if created.replayed and tx.client_identifier else "201 Created"
    headers = {"Idempotent-Replayed": "true"} if created.replayed else {}
    return _transaction_answer(tx, created.body["code"], created.body, status, headers)


def _existing(tx: inbound.Transaction) -> str | None:
    """The caller's prescription that If-None-Exist or the order identifier names (None: it is
    created); 412 when they name two different ones."""
    found = set()
    if tx.requisition:
        with contextlib.suppress(PrescriptionNotFound):
            found.add(
                prescriptions.owned_code(
                    session=db_session(), actor=current_actor(), code=tx.requisition
                )
            )
    if tx.client_identifier:
        code = prescriptions.code_of_order(
            session=db_session(), actor=current_actor(), identifier=tx.client_identifier
        )
        if code is not None:
            found.add(code)
    if len(found) > 1:
        detail = "The conditions of this creation match several prescriptions."
        raise FhirError(412, [Issue(detail, "multiple-matches")])
    return found.pop() if found else None


def _transaction_answer(
    tx: inbound.Transaction,
    code: str,
    view: dict[str, Any] | None,
    status: str,
    headers: dict[str, str],
):
    wanted = prefer.wanted()
    if view is None or (wanted == prefer.REPRESENTATION and "created_at" not in view):
        session, actor = db_session(), current_actor()
        if wanted == prefer.REPRESENTATION:
            view = prescriptions.read(session=session, actor=actor, code=code, memory=read_memory())
        else:
            view = prescriptions.status(session=session, actor=actor, code=code)
    bundle = outbound.transaction_response(
        wire.base_url(),
        tx.kinds,
        view,
        status,
        view.get("warnings", []),
        representation=wanted == prefer.REPRESENTATION,
        outcomes=wanted == prefer.OUTCOME,
    )
    return wire.respond(bundle, **headers, **prefer.applied())


# ---- ServiceRequest --------------------------------------------------------------------------


@get("/ServiceRequest/<resource_id>")
@require(PRESCRIBER, LAB)
def read_service_request(resource_id: str):
    return _service_request(resource_id, None)


@get("/ServiceRequest/<resource_id>/_history/<version>")
@require(PRESCRIBER, LAB)
def vread_service_request(resource_id: str, version: str):
    """The current version only: older versions are not kept (404)."""
    return _service_request(resource_id, version)


def _service_request(resource_id: str, version: str | None):
    code, _, line_id = resource_id.rpartition("-")
    if not code or not line_id:
        raise not_found("ServiceRequest")
    actor, memory = current_actor(), read_memory()
    view = prescriptions.read(session=db_session(), actor=actor, code=code, memory=memory)
    line = next((line for line in view["lines"] if line["id"] == line_id), None)
    if line is None or version not in (None, str(view["version"])):
        raise not_found("ServiceRequest" if line is None else "version of this ServiceRequest")
    resource = outbound.kept_service_request(memory, view, line, actor.client_pk)
    return wire.respond_encoded(resource.data, **wire.versioned(view))


@get("/ServiceRequest")
@require(PRESCRIBER, LAB)
def search_service_requests():
    return wire.respond(service_request_search.search(params.search_args("ServiceRequest")))


@post("/ServiceRequest/_search")
@require(PRESCRIBER, LAB, NURSE)
def search_service_requests_by_post():
    """The same search, its parameters in the body: the only way to search by patient (INS)."""
    query = params.search_args("ServiceRequest", form=wire.form_body())
    return wire.respond(service_request_search.search(query))


# ---- Task ------------------------------------------------------------------------------------


@get("/Task/<code>")
@require(PRESCRIBER, LAB)
def read_task(code: str):
    return _task(code, None)


@get("/Task/<code>/_history/<version>")
@require(PRESCRIBER, LAB)
def vread_task(code: str, version: str):
    """The current version only: older versions are not kept (404)."""
    return _task(code, version)


def _task(code: str, version: str | None):
    try:
        view = prescriptions.status(
            session=db_session(),
            actor=current_actor(),
            code=code,
            if_none_match=wire.domain_if_none_match(),
            memory=read_memory(),
        )
    except prescriptions.NotModified as unchanged:
        return wire.not_modified(int(unchanged.etag.strip('"v')))
    if version not in (None, str(view["version"])):
        raise not_found("version of this Task")
    if wire.if_none_match_star():
        return wire.not_modified(view["version"])
    return wire.respond(outbound.task(view), **wire.versioned(view))


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
            view = prescriptions.status(
                session=db_session(), actor=current_actor(), code=code, memory=read_memory()
            )
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
    if_match = wire.if_match_versions() if code is not None else None
    try:
        view = scan(
            data["code"], data.get("patient_ins"), data["patient_objects_to_sharing"], if_match
        )
    except ValidationFailed as error:
        raise operations.refusal(error.errors, place) from error
    output = operations.take_output(outbound.task(view), view["patient"].get("ins_match"))
    done = f"Task {view['code']} taken: {outbound.TASK_STATUS[view['status']]}."
    return prefer.answer(output, done, **wire.versioned(view))


@post("/Task/<code>/$release")
@require(LAB)
def release_task(code: str):
    operations.no_parameters(wire.json_body(required=False))
    view = laboratory.release(
        session=db_session(), actor=current_actor(), code=code, if_match=wire.if_match_versions()
    )
    done = f"Task {view['code']} released: {outbound.TASK_STATUS[view['status']]}."
    return prefer.answer(outbound.task(view), done, **wire.versioned(view))


@post("/Task/<code>/$complete")
@require(LAB)
def complete_task(code: str):
    normalised = prescriptions.parse_code(code)
    outcomes, place = operations.complete(wire.json_body(), normalised)
    try:
        view = laboratory.report(
            session=db_session(),
            actor=current_actor(),
            code=normalised,
            outcomes=outcomes,
            if_match=wire.if_match_versions(),
        )
    except ValidationFailed as error:
        raise operations.refusal(error.errors, place) from error
    done = f"Task {view['code']}: {len(outcomes)} line(s) reported, now "
    done += f"{outbound.TASK_STATUS[view['status']]}."
    return prefer.answer(outbound.task(view), done, **wire.versioned(view))


# ---- AuditEvent ------------------------------------------------------------------------------


@get("/AuditEvent/<resource_id>")
@require(PRESCRIBER, LAB)
def read_audit_event(resource_id: str):
    """One event of a prescription's history (the fullUrl of a search's entries)."""
    code, _, event_id = resource_id.rpartition("-")
    if not code or not event_id:
        raise not_found("AuditEvent")
    cursor, session, actor = None, db_session(), current_actor()
    while True:
        page = history.history(
            session=session, actor=actor, code=code, limit=history.MAX_PAGE, cursor=cursor
        )
        found = next((item for item in page["items"] if str(item["id"]) == event_id), None)
        if found is not None:
            resource = outbound.audit_events(prescriptions.parse_code(code), [found])[0]
            return wire.respond(resource)
        cursor = page["next_cursor"]
        if cursor is None:
            raise not_found("AuditEvent")


@get("/AuditEvent")
@require(PRESCRIBER, LAB)
def search_audit_events():
    """A prescription's history, `_count` events a page with the history's own cursor."""
    query = params.search_args("AuditEvent")
    entity = query.one("entity")
    if entity is None:
        raise params.bad("entity (Task/<code>) is required.", "entity")
    result, state = params.result(query), pages.cursor_state(query)
    kind, _, code = entity.rpartition("/")
    if kind not in ("", "Task", f"{wire.base_url()}/Task") or not code:
        return wire.respond(pages.bundle(query, [], None, 0))
    session, actor = db_session(), current_actor()
    limit = history.MAX_PAGE if result.count_only else max(result.count, 1)
    try:
        page = history.history(
            session=session,
            actor=actor,
            code=code,
            limit=limit,
            cursor=(state or {}).get("history"),
        )
        code = prescriptions.parse_code(code)
    except PrescriptionNotFound:
        return wire.respond(pages.bundle(query, [], None, 0))
    items = page["items"]
    last = state is None and page["next_cursor"] is None
    total = len(items) if last else None

    def go_on(shown: int) -> dict[str, Any] | None:
        if shown == len(items) and page["next_cursor"] is None:
            return None
        return pages.state_for(history=items[shown - 1]["id"])

    resources = (resource for resource in outbound.audit_events(code, items))
    return wire.respond(pages.bundle(query, resources, go_on if items else None, total))
