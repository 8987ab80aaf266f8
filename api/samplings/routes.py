from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.context import ins_key, with_etag
from api.docs import WITH_BODY, refusals
from api.documents.uploads import json_or_image, scan_from_image, scan_request_body
from api.extensions import db_session
from api.limits import limits
from api.prescriptions.schemas import PrescriptionOut
from api.samplings.out import SamplingOut
from api.samplings.schemas import NurseScanIn, SamplingIn
from epu import laboratory, nurses, samplings
from epu.actors import NURSE
from epu.errors import PrescriptionNotFound

blp = Blueprint(
    "samplings",
    __name__,
    url_prefix="/api/v1",
    description="The home nurse (IDEL): reads a prescription by its code, records the samples",
)

NOT_SCANNED = "No such prescription scanned by this nurse within 30 days"
CLOSED = {409: "The prescription is completed", 410: "Cancelled or expired"}


@blp.post("/samplings/scan")
@blp.doc(requestBody=scan_request_body(NurseScanIn))
@blp.response(200, PrescriptionOut, headers={"ETag": {"schema": {"type": "string"}}})
@refusals(
    blp,
    {
        404: "No such prescription",
        **CLOSED,
        413: "Body too large; image over 5 MB or 40 million pixels",
        415: "Neither JSON nor a PNG or JPEG part 'image'",
        422: "Invalid code (check character) or patient mismatch; in an image: "
        "no_code_found, several_codes or unreadable_image",
        429: "Too many requests, or too many unknown codes scanned",
    },
    WITH_BODY,
)
@json_or_image(NurseScanIn)
@require(NURSE)
def scan(data):
    """Read a prescription by its code, typed or in a photo, without taking charge of it"""
    if data is None:  # multipart/form-data: the code is in a photo of the ordonnance
        data = scan_from_image(NurseScanIn)
    actor = current_actor()
    limits().check_scans_allowed(actor)
    try:
        body = nurses.scan(
            session=db_session(),
            actor=actor,
            code=data["code"],
            ins_key=ins_key(),
            patient_ins=data.get("patient_ins"),
        )
    except PrescriptionNotFound:
        if limits().count_failed_scan(actor):
            laboratory.note_scans_blocked(session=db_session(), actor=actor)
        raise
    return with_etag(body)


@blp.post("/prescriptions/<code>/samplings")
@blp.arguments(SamplingIn)
@blp.response(201, SamplingOut)
@refusals(
    blp,
    {404: NOT_SCANNED, **CLOSED, 409: "Completed, or a line is no longer requested"},
    WITH_BODY,
)
@require(NURSE)
def record(data, code):
    """Record the specimens collected (the lines stay requested until the laboratory reports)"""
    return samplings.record_sampling(
        session=db_session(), actor=current_actor(), code=code, data=data
    )


@blp.put("/prescriptions/<code>/samplings/<sampling_id>")
@blp.arguments(SamplingIn)
@blp.response(200, SamplingOut)
@refusals(
    blp,
    {
        404: f"{NOT_SCANNED}, or no sampling of yours with this id",
        **CLOSED,
        409: "Not your last sampling, more than 24 hours old, completed, or a line is no "
        "longer requested",
    },
    WITH_BODY,
)
@require(NURSE)
def correct(data, code, sampling_id):
    """Correct your last sampling of this prescription, within 24 hours of recording it"""
    return samplings.correct_sampling(
        session=db_session(),
        actor=current_actor(),
        code=code,
        sampling_id=sampling_id,
        data=data,
    )
