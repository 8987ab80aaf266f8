"""What the nurse's endpoints take."""

from marshmallow import Schema, fields, validate

from api.laboratory.schemas import CodeIn
from epu.samplings import MAX_COUNT, MAX_SPECIMENS

NurseScanIn = CodeIn  # the nurse sends what the laboratory sends, without the objection


class SpecimenIn(Schema):
    type = fields.String(
        required=True,
        validate=validate.Length(min=1, max=10),
        metadata={"description": "Code of the HL7 specimen type value set", "example": "SER"},
    )
    lines = fields.List(
        fields.String(validate=validate.Length(min=1, max=8)),
        required=True,
        validate=validate.Length(max=50),
        metadata={"example": ["L1", "L2"]},
    )
    count = fields.Integer(
        strict=True,
        load_default=1,
        validate=validate.Range(min=1, max=MAX_COUNT),
        metadata={"description": "Tubes or containers"},
    )


class NotCollectedIn(Schema):
    line = fields.String(required=True, validate=validate.Length(min=1, max=8))
    reason = fields.String(required=True, validate=validate.Length(max=500))


class DestinationIn(Schema):
    finess = fields.String(
        required=True,
        validate=validate.Length(max=9),
        metadata={"description": "The laboratory the specimens are taken to"},
    )


class SamplingIn(Schema):
    collected_at = fields.AwareDateTime(
        required=True,
        metadata={"description": "ISO 8601 with offset", "example": "2026-12-01T08:10:00+01:00"},
    )
    specimens = fields.List(
        fields.Nested(SpecimenIn), required=True, validate=validate.Length(max=MAX_SPECIMENS)
    )
    not_collected = fields.List(
        fields.Nested(NotCollectedIn), load_default=list, validate=validate.Length(max=50)
    )
    comment = fields.String(allow_none=True, validate=validate.Length(max=1000))
    destination = fields.Nested(DestinationIn, allow_none=True)
