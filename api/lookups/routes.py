from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.context import ins_key
from api.docs import WITH_BODY, refusals
from api.extensions import db_session
from api.limits import limits
from api.lookups.schemas import LookupIn, LookupOut
from epu import lookups
from epu.actors import LAB, NURSE

blp = Blueprint(
    "lookups",
    __name__,
    url_prefix="/api/v1/patient-lookups",
    description="Finding a patient's prescriptions without the paper ordonnance",
)


@blp.post("")
@blp.arguments(LookupIn)
@blp.response(200, LookupOut)
@refusals(
    blp,
    {
        422: "Invalid INS (15 characters with a valid key), birth date or presence",
        429: "Too many requests, or too many lookups (EPU_LOOKUP_LIMIT per 10 minutes)",
    },
    WITH_BODY,
)
@require(LAB, NURSE)
def look_up(data):
    """The patient's open prescriptions you may serve, by INS and birth date (POST: no INS in
    URLs). A birth date that does not match lists nothing, as for a patient with none."""
    actor = current_actor()
    limits().count_lookup(actor)
    return lookups.lookup(session=db_session(), actor=actor, ins_key=ins_key(), **data)
