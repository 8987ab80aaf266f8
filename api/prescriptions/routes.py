from flask import Response, request

from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.context import ins_key, read_memory, settings, with_etag
from api.docs import WITH_BODY, WITH_QUERY, refusals
from api.extensions import db_session
from api.prescriptions.schemas import (
    AcceptIn,
    CancelIn,
    HistoryOut,
    HistoryQuery,
    ListQuery,
    PrescriptionIn,
    PrescriptionOut,
    RefuseIn,
    StatusOut,
    StatusPageOut,
)
from epu import history, prescriptions, proposals
from epu.actors import LAB, PRESCRIBER

blp = Blueprint(
    "prescriptions",
    __name__,
    url_prefix="/api/v1/prescriptions",
    description="Prescriptions: created by prescribers, followed by both parties",
)

NOT_FOUND = "No such prescription visible to the caller"
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 200},
    "description": "A retry with the same key and body replays the response",
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "ETag of the last response",
}


@blp.post("")
@blp.arguments(PrescriptionIn)
@blp.response(
    201,
    PrescriptionOut,
    headers={"Location": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}},
)
@refusals(
    blp, {422: "Invalid prescription (errors by field path), or Idempotency-Key reused"}, WITH_BODY
)
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
@require(PRESCRIBER)
def create(data):
    """Create a prescription; answers its code, with warnings that never block"""
    key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
    created = prescriptions.create(
        session=db_session(),
        actor=current_actor(),
        data=data,
        ins_key=ins_key(),
        validity_days=settings().validity_days,
        idempotency_key=key,
    )
    headers = {"Location": f"/api/v1/prescriptions/{created.body['code']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return with_etag(created.body, 201, **headers)


@blp.get("")
@blp.arguments(ListQuery, location="query")
@blp.response(200, StatusPageOut)
@refusals(blp, {}, WITH_QUERY)
@require(PRESCRIBER)
def list_own(query):
    """The caller's prescriptions, by update time, with a cursor"""
    return prescriptions.list_own(session=db_session(), actor=current_actor(), **query)


@blp.get("/<code>")
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(blp, {404: NOT_FOUND})
@require(PRESCRIBER, LAB)
def read(code):
    """The full prescription (the read is recorded in its history)"""
    return with_etag(
        prescriptions.read(
            session=db_session(), actor=current_actor(), code=code, memory=read_memory()
        )
    )


@blp.get("/<code>/status")
@blp.response(200, StatusOut, headers={"ETag": {"schema": {"type": "string"}}})
@blp.alt_response(304, description="Not modified since the ETag given in If-None-Match")
@refusals(blp, {404: NOT_FOUND})
@blp.doc(parameters=[IF_NONE_MATCH])
@require(PRESCRIBER, LAB)
def status(code):
    """Poll the status: answer 304 while the ETag is current"""
    try:
        body = prescriptions.status(
            session=db_session(),
            actor=current_actor(),
            code=code,
            if_none_match=request.headers.get("If-None-Match"),
            memory=read_memory(),
        )
    except prescriptions.NotModified as not_modified:
        return Response(status=304, headers={"ETag": not_modified.etag})
    return with_etag(body)


@blp.post("/<code>/cancel")
@blp.arguments(CancelIn)
@blp.response(200, PrescriptionOut)
@refusals(blp, {404: NOT_FOUND, 409: "Held by a laboratory, completed or expired"}, WITH_BODY)
@require(PRESCRIBER)
def cancel(data, code):
    """Cancel while no laboratory holds it (repeating is harmless)"""
    return with_etag(
        prescriptions.cancel(
            session=db_session(), actor=current_actor(), code=code, reason=data["reason"]
        )
    )


@blp.get("/<code>/history")
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistoryOut)
@refusals(blp, {404: NOT_FOUND}, WITH_QUERY)
@require(PRESCRIBER, LAB)
def read_history(query, code):
    """The audit trail, oldest first, a page at a time (next_cursor)"""
    return history.history(session=db_session(), actor=current_actor(), code=code, **query)


ANSWER_REFUSALS = {
    404: NOT_FOUND + ", or no such proposal",
    409: "The proposal is not pending (its status is in the answer's `status`)",
}


@blp.post("/<code>/proposals/<proposal_id>/accept")
@blp.arguments(AcceptIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(blp, ANSWER_REFUSALS, WITH_BODY)
@require(PRESCRIBER)
def accept(data, code, proposal_id):
    """Accept the laboratory's proposal: its changes apply now (accepting twice is harmless)"""
    return with_etag(
        proposals.accept(
            session=db_session(),
            actor=current_actor(),
            code=code,
            proposal_id=proposal_id,
            comment=data.get("comment"),
        )
    )


@blp.post("/<code>/proposals/<proposal_id>/refuse")
@blp.arguments(RefuseIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(blp, ANSWER_REFUSALS, WITH_BODY)
@require(PRESCRIBER)
def refuse(data, code, proposal_id):
    """Refuse it, saying why: the laboratory carries out the prescription as written"""
    return with_etag(
        proposals.refuse(
            session=db_session(),
            actor=current_actor(),
            code=code,
            proposal_id=proposal_id,
            comment=data["comment"],
        )
    )
