"""Schemas shared by several resources: problems, pagination."""

from marshmallow import Schema, fields


class ProblemSchema(Schema):
    type = fields.String(metadata={"example": "https://epu.esante.gouv.fr/problems/validation"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    code = fields.String(metadata={"description": "Machine-readable name of the situation"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Validation messages keyed by field path, e.g. lines[1].loinc"},
    )
