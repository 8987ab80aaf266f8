"""How samplings are shown: inside a prescription's full read and in the status poll."""

from marshmallow import Schema, fields, validate

SAMPLING_STATUSES = ("collected", "partially_collected")


class NurseOut(Schema):
    rpps = fields.String()
    name = fields.String()


class SpecimenOut(Schema):
    type = fields.String(metadata={"description": "HL7 specimen type code", "example": "SER"})
    label = fields.String(allow_none=True, metadata={"example": "Sérum"})
    lines = fields.List(fields.String(), metadata={"example": ["L1", "L2"]})
    count = fields.Integer(metadata={"description": "Tubes or containers"})


class NotCollectedOut(Schema):
    line = fields.String()
    reason = fields.String()


class DestinationOut(Schema):
    finess = fields.String()


class SamplingOut(Schema):
    id = fields.String()
    status = fields.String(
        validate=validate.OneOf(SAMPLING_STATUSES),
        metadata={"description": "collected: every line still requested has a specimen"},
    )
    collected_at = fields.String(metadata={"format": "date-time"})
    recorded_at = fields.String(metadata={"format": "date-time"})
    corrected_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    nurse = fields.Nested(
        NurseOut,
        allow_none=True,
        metadata={"description": "null for the prescriber when the patient objected to sharing"},
    )
    specimens = fields.List(fields.Nested(SpecimenOut))
    not_collected = fields.List(fields.Nested(NotCollectedOut))
    comment = fields.String(allow_none=True)
    destination = fields.Nested(DestinationOut, allow_none=True)


class SamplingSummaryOut(Schema):
    status = fields.String(validate=validate.OneOf(SAMPLING_STATUSES))
    at = fields.String(metadata={"format": "date-time", "description": "When it was collected"})
