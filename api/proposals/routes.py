from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.docs import WITH_QUERY, refusals
from api.extensions import db_session
from api.prescriptions.schemas import InboxOut, InboxQuery
from epu import proposals
from epu.actors import LAB, PRESCRIBER

blp = Blueprint(
    "proposals",
    __name__,
    url_prefix="/api/v1/proposals",
    description="Laboratories' proposals: the prescriber's inbox, the laboratory's outbox",
)


@blp.get("")
@blp.arguments(InboxQuery, location="query")
@blp.response(200, InboxOut)
@refusals(blp, {}, WITH_QUERY)
@require(PRESCRIBER, LAB)
def inbox(query):
    """Proposals made to this prescriber (or by this laboratory), newest first, with a cursor"""
    return proposals.inbox(session=db_session(), actor=current_actor(), **query)
