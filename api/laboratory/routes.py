from contextlib import nullcontext

from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.context import ins_key, versions_in_if_match, with_etag
from api.docs import WITH_BODY, refusals
from api.documents.uploads import json_or_image, scan_from_image, scan_request_body
from api.extensions import db_session
from api.laboratory.schemas import DoneIn, PatchIn, ScanIn
from api.limits import limits
from api.prescriptions.schemas import PrescriptionOut
from epu import laboratory, proposals
from epu.actors import LAB
from epu.errors import PatientMismatch, PrescriptionNotFound

NOT_HELD = "Not held by this laboratory"

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
@blp.doc(requestBody=scan_request_body(ScanIn))
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(
    blp,
    {
        404: "No such prescription",
        409: "Held by another laboratory, or completed",
        410: "Cancelled or expired",
        413: "Body too large; image over 5 MB, 40 million pixels (16 million in PNG) "
        "or 65,535 on a side",
        415: "Neither JSON nor a PNG or JPEG part 'image'",
        422: "Invalid code (check character) or patient mismatch; in an image: "
        "no_code_found, several_codes or unreadable_image",
        429: "Too many requests, too many unknown codes scanned, or INS checks paused "
        "after too many INS mismatches",
    },
    WITH_BODY,
)
@json_or_image(ScanIn)
@require(LAB)
def scan(data):
    """Take charge of a prescription by its code, typed or in a photo (idempotent for the holder)"""
    if data is None:  # multipart/form-data: the code is in a photo of the ordonnance
        data = scan_from_image(ScanIn)
    return with_etag(
        take(data["code"], data.get("patient_ins"), data["patient_objects_to_sharing"])
    )


def take(
    code: str, patient_ins: str | None, objects_to_sharing: bool, if_match: set[int] | None = None
) -> dict:
    actor = current_actor()
    with (
        limits().failed_scan_slot(actor) as slot,
        limits().ins_mismatch_slot(actor) if patient_ins else nullcontext() as ins_slot,
    ):
        try:
            return laboratory.take(
                session=db_session(),
                actor=actor,
                code=code,
                ins_key=ins_key(),
                patient_ins=patient_ins,
                objects_to_sharing=objects_to_sharing,
                if_match=if_match,
            )
        except PrescriptionNotFound:
            slot.keep()
            if slot.exhausted:
                laboratory.note_scans_blocked(session=db_session(), actor=actor)
            raise
        except PatientMismatch:
            ins_slot.keep()
            raise


@blp.post("/prescriptions/<code>/release")
@blp.response(200, PrescriptionOut)
@refusals(blp, {404: NOT_HELD})
@require(LAB)
def release(code):
    """Give the prescription back: any laboratory may take it again"""
    return with_etag(laboratory.release(session=db_session(), actor=current_actor(), code=code))


@blp.patch("/prescriptions/<code>")
@blp.arguments(PatchIn)
@blp.response(202, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@blp.alt_response(200, schema=PrescriptionOut, description="Applied at once (urgent, unavailable)")
@refusals(
    blp,
    {
        404: NOT_HELD,
        409: "A changed line is no longer requested; a proposal is pending (proposal_pending); "
        "completed by this laboratory (prescription_completed)",
        412: "If-Match is not the current version",
        428: "If-Match is missing",
    },
    WITH_BODY,
)
@blp.doc(parameters=[IF_MATCH])
@require(LAB)
def modify(data, code):
    """Propose exams to add, remove or replace, each with a reason; or apply them at once"""
    body = proposals.change(
        session=db_session(),
        actor=current_actor(),
        code=code,
        if_match=versions_in_if_match(),
        changes=data["changes"],
        mode=data["mode"],
        reason=data.get("reason"),
    )
    return with_etag(body, 202 if data["mode"] == proposals.PROPOSAL else 200)


@blp.post("/prescriptions/<code>/proposals/<proposal_id>/withdraw")
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(blp, {404: NOT_HELD + ", or no such proposal", 409: "The proposal is not pending"})
@require(LAB)
def withdraw(code, proposal_id):
    """Withdraw this laboratory's pending proposal (repeating is harmless)"""
    return with_etag(
        proposals.withdraw(
            session=db_session(), actor=current_actor(), code=code, proposal_id=proposal_id
        )
    )


@blp.post("/prescriptions/<code>/done")
@blp.arguments(DoneIn)
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(
    blp,
    {
        404: NOT_HELD,
        409: "A reported line is not requested, or awaits the answer to a proposal "
        "(proposal_pending); completed by this laboratory (prescription_completed)",
    },
    WITH_BODY,
)
@require(LAB)
def report(data, code):
    """Report exams done or not done; the last one ends this execution"""
    return with_etag(
        laboratory.report(
            session=db_session(), actor=current_actor(), code=code, outcomes=data["lines"]
        )
    )
