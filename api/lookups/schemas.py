"""What the patient lookup takes and gives."""

from marshmallow import Schema, fields, validate

from api.prescriptions.schemas import PrescriberOut
from epu.lookups import PRESENCE_KINDS


class LookupIn(Schema):
    ins = fields.String(
        required=True,
        validate=validate.Length(min=1, max=32),
        metadata={"description": "INS of the patient at the desk (pseudonymised, never kept)"},
    )
    birth_date = fields.Date(required=True, metadata={"example": "1969-05-01"})
    presence = fields.String(
        required=True,
        validate=validate.OneOf(PRESENCE_KINDS),
        metadata={
            "description": "How the INS was read: carte Vitale, appli carte Vitale (apcv), "
            "the INS datamatrix of a document, or declared by the patient"
        },
    )


class LookupItemOut(Schema):
    code = fields.String(metadata={"example": "01S2TBPZ2JCNZZYGHZ"})
    status = fields.String(validate=validate.OneOf(("active", "in_progress")))
    created_at = fields.String(metadata={"format": "date-time"})
    expires_at = fields.String(metadata={"format": "date-time"})
    prescriber = fields.Nested(PrescriberOut)
    lines = fields.Integer(metadata={"description": "Exams still requested"})
    urgent = fields.Boolean(metadata={"description": "One of them is urgent"})
    held_by_caller = fields.Boolean()


class LookupOut(Schema):
    items = fields.List(fields.Nested(LookupItemOut))
