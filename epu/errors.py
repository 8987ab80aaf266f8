"""Business situations that refuse a request. Turned into HTTP in exactly one place per protocol."""


class DomainError(Exception):
    """Base: `slug` names the situation for clients, `detail` explains it to a person."""

    slug = "error"
    title = "Request refused"
    detail = ""

    def __init__(self, detail: str | None = None, **members: str):
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.members = members  # extra fields a client may read (e.g. a proposal's status)


class ValidationFailed(DomainError):
    slug = "validation"
    title = "The request is not valid"
    detail = "Some fields are not valid."

    def __init__(self, errors: dict[str, str], detail: str | None = None):
        self.errors = errors
        super().__init__(detail or "; ".join(f"{path}: {msg}" for path, msg in errors.items()))


class PrescriptionNotFound(DomainError):
    slug = "not_found"
    title = "Prescription not found"
    detail = "No prescription with this code is available to you."


class InvalidPrescriptionCode(DomainError):
    slug = "invalid_code"
    title = "Invalid prescription code"


class HeldByAnotherLaboratory(DomainError):
    slug = "held_by_another_laboratory"
    title = "Held by another laboratory"
    detail = "Another laboratory has taken charge of this prescription."


class PrescriptionCancelled(DomainError):
    slug = "cancelled"
    title = "Prescription cancelled"
    detail = "The prescriber cancelled this prescription."


class PrescriptionCompleted(DomainError):
    slug = "completed"
    title = "Prescription completed"
    detail = "Every exam of this prescription has been carried out."


class PrescriptionExpired(DomainError):
    slug = "expired"
    title = "Prescription expired"
    detail = "This prescription is past its validity."


class PatientMismatch(DomainError):
    slug = "patient_mismatch"
    title = "Patient mismatch"
    detail = "The INS given is not the one of this prescription's patient."


class InsChecksPaused(DomainError):
    slug = "ins_checks_paused"
    title = "INS checks paused"
    detail = (
        "Too many INS mismatches for this prescription or from this laboratory: the INS check "
        "is paused; scan without patient_ins, or retry later."
    )

    def __init__(self, detail: str | None = None, *, retry_after: int = 3600):
        super().__init__(detail)
        self.retry_after = retry_after


class NotCancellable(DomainError):
    slug = "not_cancellable"
    title = "Prescription cannot be cancelled"


class NotHeld(DomainError):
    slug = "not_held"
    title = "Prescription not held by this laboratory"
    detail = "Take charge of the prescription (scan it) first."


class LineNotRequested(DomainError):
    slug = "line_not_requested"
    title = "Line not requested"


class StaleVersion(DomainError):
    slug = "stale_version"
    title = "The prescription has changed"
    detail = "The If-Match version is not the current one: read the prescription again."


class IdempotencyKeyReused(DomainError):
    slug = "idempotency_key_reused"
    title = "Idempotency key reused"
    detail = "This Idempotency-Key was already used with a different request body."


class ExecutionCompleted(DomainError):
    slug = "prescription_completed"
    title = "Prescription completed"
    detail = "This laboratory has completed this prescription: nothing is left to carry out."


class NotExpirable(DomainError):
    slug = "not_expirable"
    title = "Only an active prescription expires"


class ProposalNotFound(DomainError):
    slug = "not_found"
    title = "Proposal not found"
    detail = "No proposal with this id in this prescription."


class ProposalPending(DomainError):
    slug = "proposal_pending"
    title = "A proposal awaits the prescriber's answer"


class ProposalNotPending(DomainError):
    slug = "proposal_not_pending"
    title = "The proposal is no longer pending"
    detail = "This proposal has already been answered, withdrawn or superseded."


class TooManyProposals(DomainError):
    slug = "too_many_proposals"
    title = "Too many proposals"
    detail = "This prescription has had 50 proposals: call the prescriber."


class SubscriptionNotFound(DomainError):
    slug = "not_found"
    title = "Subscription not found"
    detail = "No subscription with this id is available to you."


class TooManySubscriptions(DomainError):
    slug = "too_many_subscriptions"
    title = "Too many subscriptions"
    detail = "A client may hold at most 10 subscriptions: delete one first."


class WebhookUrlRefused(ValidationFailed):
    slug = "webhook_url_refused"
    title = "Webhook URL refused"
