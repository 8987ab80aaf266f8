from flask import request
from flask_smorest import Blueprint

from api.auth import current_actor, require
from api.context import ins_key, with_etag
from api.errors import Problem
from api.extensions import db_session
from api.laboratory.schemas import DoneIn, PatchIn, ScanIn
from api.limits import limits
from api.prescriptions.schemas import PrescriptionOut
from epu import laboratory
from epu.actors import LAB
from epu.audit import record
from epu.errors import PrescriptionNotFound

blp = Blueprint(
    "laboratory",
    __name__,
    url_prefix="/api/v1",
    description="The laboratory's workflow: scan, adapt, report",
)

IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "ETag of the version the changes apply to",
}


@blp.post("/scans")
@blp.arguments(ScanIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@blp.alt_response(404, description="No such prescription")
@blp.alt_response(409, description="Held by another laboratory, or completed")
@blp.alt_response(410, description="Cancelled or expired")
@blp.alt_response(422, description="Invalid code (check character) or patient mismatch")
@blp.alt_response(429, description="Too many unknown codes scanned")
@require(LAB)
def scan(data):
    """Take charge of a prescription by its code (idempotent for the holding laboratory)"""
    return with_etag(
        take(data["code"], data.get("patient_ins"), data["patient_objects_to_sharing"])
    )


def take(code: str, patient_ins: str | None, objects_to_sharing: bool) -> dict:
    actor = current_actor()
    limits().check_scans_allowed(actor)
    try:
        return laboratory.take(
            session=db_session(),
            actor=actor,
            code=code,
            ins_key=ins_key(),
            patient_ins=patient_ins,
            objects_to_sharing=objects_to_sharing,
        )
    except PrescriptionNotFound:
        if limits().count_failed_scan(actor):
            session = db_session()
            record(session, None, "failed_scans_limit", actor, {"window": "10 minutes"})
            session.commit()
        raise


@blp.post("/prescriptions/<code>/release")
@blp.response(200, PrescriptionOut)
@blp.alt_response(404, description="Not held by this laboratory")
@require(LAB)
def release(code):
    """Give the prescription back: any laboratory may take it again"""
    return with_etag(laboratory.release(session=db_session(), actor=current_actor(), code=code))


@blp.patch("/prescriptions/<code>")
@blp.arguments(PatchIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@blp.alt_response(404, description="Not held by this laboratory")
@blp.alt_response(409, description="A changed line is no longer requested")
@blp.alt_response(412, description="If-Match is not the current version")
@blp.alt_response(428, description="If-Match is missing")
@blp.doc(parameters=[IF_MATCH])
@require(LAB)
def modify(data, code):
    """Add, remove or replace exams, each with a reason; all or nothing"""
    if_match = request.headers.get("If-Match")
    if not if_match:
        raise Problem(428, "Send If-Match with the ETag of the version you are changing.")
    return with_etag(
        laboratory.modify(
            session=db_session(),
            actor=current_actor(),
            code=code,
            if_match=if_match,
            changes=data["changes"],
        )
    )


@blp.post("/prescriptions/<code>/done")
@blp.arguments(DoneIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@blp.alt_response(404, description="Not held by this laboratory")
@blp.alt_response(409, description="A reported line is not requested")
@require(LAB)
def report(data, code):
    """Report exams done or not done; the last one ends this execution"""
    return with_etag(
        laboratory.report(
            session=db_session(), actor=current_actor(), code=code, outcomes=data["lines"]
        )
    )
