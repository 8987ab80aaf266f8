"""What the document endpoints take: the QR scale, and what is printed but never stored."""

from datetime import date

from marshmallow import Schema, ValidationError, fields, validate

from models.base import latest_today
from qr.render import MAX_SCALE, MIN_SCALE

DEFAULT_SCALE = 4


def _not_in_future(value: date) -> None:
    if value > latest_today():
        raise ValidationError("must not be in the future")


class QrQuery(Schema):
    scale = fields.Integer(
        load_default=DEFAULT_SCALE,
        validate=validate.Range(min=MIN_SCALE, max=MAX_SCALE),
        metadata={"description": "Pixels (PNG) or user units (SVG) per module"},
    )


class OrdonnanceQuery(Schema):
    patient_name = fields.String(
        validate=validate.Length(max=200),
        metadata={"description": "Printed on this copy only: never stored nor logged by EPU"},
    )
    patient_birth_date = fields.Date(
        validate=_not_in_future,
        metadata={"description": "YYYY-MM-DD; printed instead of the stored one, never stored"},
    )
    sampling_sheet = fields.Boolean(
        load_default=False,
        metadata={"description": "Add the nurse's sampling sheet: lines by specimen type"},
    )


BINARY = {"type": "string", "format": "binary"}

SCAN_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {**BINARY, "description": "A photo or scan (PNG or JPEG, at most 5 MB)"},
        "patient_ins": {
            "type": "string",
            "maxLength": 32,
            "description": "INS of the patient at the desk",
        },
        "patient_objects_to_sharing": {
            "type": "string",
            "enum": ["true", "false"],
            "default": "false",
        },
    },
}
