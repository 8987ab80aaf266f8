from marshmallow import Schema, fields, validate


class CatalogueQuerySchema(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=100))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class RequiredContextSchema(Schema):
    code = fields.String(metadata={"example": "8665-2"})
    label = fields.String(metadata={"example": "Date des dernières règles"})
    type = fields.String(metadata={"example": "date"})


class CatalogueEntrySchema(Schema):
    loinc = fields.String(metadata={"example": "2842-3"})
    label = fields.String(metadata={"example": "Prolactine"})
    synonyms = fields.List(fields.String())
    required_context = fields.List(fields.Nested(RequiredContextSchema))
    patient_instructions = fields.List(fields.String(), metadata={"example": ["MED-1165"]})
    specimen = fields.String(
        allow_none=True,
        metadata={"description": "The usual HL7 specimen type (SER, WB, PLAS, UR...)"},
    )


class CatalogueSearchSchema(Schema):
    items = fields.List(fields.Nested(CatalogueEntrySchema))
