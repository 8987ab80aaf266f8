from marshmallow import Schema, fields, validate

from api.prescriptions.schemas import LineIn
from epu.proposals import MODES, PROPOSAL


class CodeIn(Schema):
    """A scanned or typed code, as the laboratory and the nurse send it."""

    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "What the scanner read or the person at the desk "
            "typed; case, spaces, hyphens and I/L/O are forgiven",
            "example": "01S2-TBPZ-2JCN-ZZYG-H6",
        },
    )
    patient_ins = fields.String(
        allow_none=True,
        validate=validate.Length(max=32),
        metadata={"description": "INS of the patient, checked against the prescription's"},
    )


class ScanIn(CodeIn):
    patient_objects_to_sharing = fields.Boolean(load_default=False)


class ChangeIn(Schema):
    op = fields.String(required=True, validate=validate.OneOf(("add", "remove", "replace")))
    line = fields.Nested(LineIn, allow_none=True)
    line_id = fields.String(validate=validate.Length(max=8))
    reason = fields.String(required=True, validate=validate.Length(max=500))


class PatchIn(Schema):
    changes = fields.List(
        fields.Nested(ChangeIn), required=True, validate=validate.Length(min=1, max=50)
    )
    mode = fields.String(
        load_default=PROPOSAL,
        validate=validate.OneOf(MODES),
        metadata={
            "description": "proposal (default): stored for the prescriber to answer, nothing "
            "changes yet (202); urgent or prescriber_unavailable: applied at once (200) and "
            "shown to the prescriber as an applied proposal (art. L6211-8 CSP)"
        },
    )
    reason = fields.String(
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Required for prescriber_unavailable: who was called, when"},
    )


class OutcomeIn(Schema):
    line_id = fields.String(required=True, validate=validate.Length(max=8))
    outcome = fields.String(required=True, validate=validate.OneOf(("done", "not_done")))
    reason = fields.String(allow_none=True, validate=validate.Length(max=500))


class DoneIn(Schema):
    lines = fields.List(
        fields.Nested(OutcomeIn), required=True, validate=validate.Length(min=1, max=100)
    )
