"""What the prescription endpoints take and give."""

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from epu.lifecycle import PROPOSAL_STATUSES
from epu.proposals import MODES
from epu.statuses import (
    LINE_STATUSES,
    MAX_RENEWALS,
    PRESCRIPTION_STATUSES,
    RESULT_CHANNELS,
    SEXES,
)

IDENTITY_FIELDS = {
    "name",
    "names",
    "family",
    "family_name",
    "given",
    "given_name",
    "first_name",
    "last_name",
    "birth_name",
    "usual_name",
    "patient_name",
    "address",
    "addresses",
    "email",
    "telecom",
    "phone",
    "nir",
    "social_security_number",
    "city",
    "postal_code",
}
IDENTITY_MESSAGE = (
    "EPU is anonymous: names, addresses and other identity data are refused. "
    "Send only sex, birth date and the INS (which is pseudonymised)."
)


class Scalar(fields.Field):
    """A context value: a string, a number or a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool | int | float | str):
            return value
        raise ValidationError("must be a string, a number or a boolean")


def refuse_identity(data, allowed: set[str]):
    if isinstance(data, dict):
        found = {key: [IDENTITY_MESSAGE] for key in data if key in IDENTITY_FIELDS - allowed}
        if found:
            raise ValidationError(found)
    return data


class ContextItemIn(Schema):
    code = fields.String(
        required=True, validate=validate.Length(max=10), metadata={"example": "8665-2"}
    )
    value = Scalar(required=True, metadata={"example": "2026-11-02", "maxLength": 200})


class LineIn(Schema):
    loinc = fields.String(
        allow_none=True, validate=validate.Length(max=10), metadata={"example": "2842-3"}
    )
    text = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Free-text exam, for an exam with no code"},
    )
    context = fields.List(
        fields.Nested(ContextItemIn), load_default=list, validate=validate.Length(max=20)
    )
    urgent = fields.Boolean(load_default=False)
    urgent_reason = fields.String(
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Why it is urgent: required when urgent is true"},
    )
    ald = fields.Boolean(load_default=False)
    prevention = fields.Boolean(load_default=False)
    work_accident = fields.Boolean(
        load_default=False,
        metadata={"description": "Related to a work accident or an occupational disease (AT/MP)"},
    )
    not_reimbursable = fields.Boolean(load_default=False)
    off_nomenclature = fields.Boolean(
        load_default=False, metadata={"description": "Outside the nomenclature (hors NABM)"}
    )
    renewals = fields.Integer(
        strict=True, load_default=0, metadata={"minimum": 0, "maximum": MAX_RENEWALS}
    )
    patient_instructions = fields.List(
        fields.String(validate=validate.Length(max=10)),
        load_default=list,
        validate=validate.Length(max=10),
    )
    sampling_instructions = fields.String(allow_none=True, validate=validate.Length(max=1000))
    comment = fields.String(allow_none=True, validate=validate.Length(max=1000))


class PatientIn(Schema):
    ins = fields.String(
        allow_none=True,
        validate=validate.Length(max=32),
        metadata={
            "description": "INS (15 characters); only a keyed pseudonym is stored",
            "example": "269052A12345688",
        },
    )
    sex = fields.String(required=True, validate=validate.OneOf(SEXES))
    birth_date = fields.Date(required=True)

    @pre_load
    def no_identity(self, data, **kwargs):
        return refuse_identity(data, allowed=set())


class CopyToIn(Schema):
    rpps = fields.String(required=True, validate=validate.Length(max=11))
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class ResultReturnIn(Schema):
    channels = fields.List(
        fields.String(validate=validate.OneOf(RESULT_CHANNELS)),
        load_default=list,
        validate=validate.Length(max=len(RESULT_CHANNELS)),
    )
    phone = fields.String(allow_none=True, validate=validate.Length(max=30))
    copies_to = fields.List(
        fields.Nested(CopyToIn), load_default=list, validate=validate.Length(max=10)
    )


class PrescriptionIn(Schema):
    patient = fields.Nested(PatientIn, required=True)
    clinical_context = fields.String(allow_none=True, validate=validate.Length(max=2000))
    result_return = fields.Nested(ResultReturnIn, allow_none=True)
    lines = fields.List(fields.Nested(LineIn), required=True)

    @pre_load
    def no_identity(self, data, **kwargs):
        return refuse_identity(data, allowed=set())


class AcceptIn(Schema):
    comment = fields.String(allow_none=True, validate=validate.Length(max=500))


class RefuseIn(Schema):
    comment = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CancelIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ListQuery(Schema):
    status = fields.String(validate=validate.OneOf(PRESCRIPTION_STATUSES))
    updated_since = fields.AwareDateTime(default_timezone=UTC)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))


# ---- out ------------------------------------------------------------------------------------


class ContextItemOut(Schema):
    code = fields.String()
    label = fields.String(allow_none=True)
    value = fields.Raw()


class InstructionOut(Schema):
    code = fields.String(metadata={"example": "MED-1160"})
    label = fields.String(allow_none=True, metadata={"example": "A jeûn"})


class LineOut(Schema):
    id = fields.String(metadata={"example": "L1"})
    loinc = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    context = fields.List(fields.Nested(ContextItemOut))
    urgent = fields.Boolean()
    urgent_reason = fields.String(allow_none=True)
    ald = fields.Boolean()
    prevention = fields.Boolean()
    work_accident = fields.Boolean()
    not_reimbursable = fields.Boolean()
    off_nomenclature = fields.Boolean()
    renewals = fields.Integer()
    renewals_left = fields.Integer(allow_none=True)
    patient_instructions = fields.List(fields.Nested(InstructionOut))
    sampling_instructions = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    status = fields.String(
        allow_none=True,
        validate=validate.OneOf(LINE_STATUSES),
        metadata={"description": "null when the patient withheld execution"},
    )
    origin = fields.String(validate=validate.OneOf(("prescriber", "laboratory")))
    replaces = fields.String(allow_none=True)
    reason = fields.String(
        allow_none=True, metadata={"description": "Why a line was removed, replaced or not done"}
    )


class PrescriberOut(Schema):
    rpps = fields.String()
    name = fields.String()


class PatientOut(Schema):
    sex = fields.String()
    birth_date = fields.String(metadata={"format": "date"})
    ins_verified = fields.Boolean()
    ins_match = fields.Boolean(metadata={"description": "Scan only: the INS given matched"})


class LaboratoryOut(Schema):
    finess = fields.String()
    name = fields.String()


class CopyToOut(Schema):
    rpps = fields.String()
    name = fields.String(allow_none=True)


class ResultReturnOut(Schema):
    channels = fields.List(fields.String())
    phone = fields.String(allow_none=True)
    copies_to = fields.List(fields.Nested(CopyToOut))


class WarningOut(Schema):
    code = fields.String(
        validate=validate.OneOf(("missing_clinical_context", "possible_duplicate"))
    )
    line = fields.String()
    detail = fields.String()


class ProposalOut(Schema):
    id = fields.String(metadata={"example": "P1"})
    status = fields.String(validate=validate.OneOf(PROPOSAL_STATUSES))
    mode = fields.String(validate=validate.OneOf(MODES))
    changes = fields.List(fields.Dict(), metadata={"description": "As the laboratory sent them"})
    reason = fields.String(allow_none=True)
    comment = fields.String(allow_none=True, metadata={"description": "The prescriber's"})
    created_at = fields.String(metadata={"format": "date-time"})
    answered_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    laboratory = fields.Nested(LaboratoryOut, allow_none=True)


class InboxItemOut(ProposalOut):
    prescription = fields.String(metadata={"description": "The prescription's code"})


class InboxOut(Schema):
    items = fields.List(fields.Nested(InboxItemOut))
    next_cursor = fields.String(allow_none=True)


class InboxQuery(Schema):
    status = fields.String(validate=validate.OneOf(PROPOSAL_STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))


class LastProposalOut(Schema):
    id = fields.String()
    status = fields.String()
    mode = fields.String()


class ProposalsSummaryOut(Schema):
    pending = fields.Integer()
    last = fields.Nested(LastProposalOut, allow_none=True)


class PrescriptionOut(Schema):
    code = fields.String(metadata={"example": "01S2TBPZ2JCNZZYGH6"})
    status = fields.String(validate=validate.OneOf(PRESCRIPTION_STATUSES))
    version = fields.Integer()
    modified = fields.Boolean(allow_none=True)
    execution_withheld = fields.Boolean()
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    expires_at = fields.String(metadata={"format": "date-time"})
    prescriber = fields.Nested(PrescriberOut)
    patient = fields.Nested(PatientOut)
    laboratory = fields.Nested(LaboratoryOut, allow_none=True)
    clinical_context = fields.String(allow_none=True)
    result_return = fields.Nested(ResultReturnOut, allow_none=True)
    lines = fields.List(fields.Nested(LineOut))
    proposals = fields.List(fields.Nested(ProposalOut))
    warnings = fields.List(fields.Nested(WarningOut), metadata={"description": "Creation only"})


class StatusLineOut(Schema):
    id = fields.String()
    loinc = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    status = fields.String(allow_none=True)


class StatusOut(Schema):
    code = fields.String()
    status = fields.String(validate=validate.OneOf(PRESCRIPTION_STATUSES))
    version = fields.Integer()
    modified = fields.Boolean(allow_none=True)
    execution_withheld = fields.Boolean()
    updated_at = fields.String(metadata={"format": "date-time"})
    laboratory = fields.Nested(LaboratoryOut, allow_none=True)
    lines = fields.List(fields.Nested(StatusLineOut))
    proposals = fields.Nested(ProposalsSummaryOut)


class StatusPageOut(Schema):
    items = fields.List(fields.Nested(StatusOut))
    next_cursor = fields.String(allow_none=True)


class ActorOut(Schema):
    role = fields.String()
    identifier = fields.String(allow_none=True)
    name = fields.String(allow_none=True)


class EventOut(Schema):
    id = fields.String(metadata={"description": "Opaque; also the cursor after this event"})
    at = fields.String(metadata={"format": "date-time"})
    type = fields.String()
    actor = fields.Nested(ActorOut)
    detail = fields.Dict()


class HistoryOut(Schema):
    items = fields.List(fields.Nested(EventOut))
    next_cursor = fields.String(allow_none=True)


class HistoryQuery(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=24))
