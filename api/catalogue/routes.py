from api.auth import require
from api.blueprint import Blueprint
from api.catalogue.schemas import CatalogueEntrySchema, CatalogueQuerySchema, CatalogueSearchSchema
from api.docs import WITH_QUERY, refusals
from api.errors import Problem
from api.extensions import db_session
from epu import catalogue
from epu.actors import ROLES

blp = Blueprint(
    "catalogue",
    __name__,
    url_prefix="/api/v1/catalogue",
    description="The biology catalogue 'LOINC circuit de la biologie'",
)


@blp.get("")
@blp.arguments(CatalogueQuerySchema, location="query")
@blp.response(200, CatalogueSearchSchema)
@refusals(blp, {}, WITH_QUERY)
@require(*ROLES)
def search(query):
    """Search exams by code, label words, prefixes and synonyms, best match first"""
    entries = catalogue.current(db_session()).search(query["q"], query["limit"])
    db_session().rollback()
    return {"items": [entry.as_dict() for entry in entries]}


@blp.get("/<loinc>")
@blp.response(200, CatalogueEntrySchema)
@refusals(blp, {404: "Code not in the catalogue"})
@require(*ROLES)
def get_entry(loinc):
    """One catalogue entry"""
    entry = catalogue.current(db_session()).get(loinc)
    db_session().rollback()
    if entry is None:
        raise Problem(404, f"{loinc!r} is not in the current catalogue.")
    return entry.as_dict()
