"""Laboratory-side use cases: take charge, release, adapt, report outcomes. Each commits once."""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from epu import codes, lifecycle, proposals, views
from epu.actors import Actor
from epu.audit import record
from epu.errors import (
    InsChecksPaused,
    InvalidPrescriptionCode,
    LineNotRequested,
    PatientMismatch,
    PrescriptionNotFound,
    ProposalPending,
    StaleVersion,
    ValidationFailed,
)
from epu.identifiers import ins_pseudonym, is_ins
from epu.prescriptions import apply_expiry, find, find_for, role, touch
from epu.statuses import (
    ACTIVE,
    DONE,
    NOT_DONE,
    REQUESTED,
)
from models import Event, Line, Prescription
from models.base import utcnow
from models.db import writes

INS_MISMATCHES_PER_HOUR = 5
INS_MISMATCH_WINDOW = timedelta(hours=1)


def normalise_scanned(raw: str) -> str:
    try:
        return codes.normalise(raw)
    except codes.InvalidCode as error:
        raise InvalidPrescriptionCode(str(error)) from error


@writes
def take(
    *,
    session: Session,
    actor: Actor,
    code: str,
    ins_key: bytes,
    patient_ins: str | None = None,
    objects_to_sharing: bool = False,
    if_match: Collection[int] | None = None,
) -> dict[str, Any]:
    """Scan: the laboratory takes charge of an active prescription (idempotent for the holder).

    `if_match`: the versions the client read (None: not checked)."""
    normalised = normalise_scanned(code)
    if patient_ins is not None and not is_ins(patient_ins):
        raise ValidationFailed({"patient_ins": "must be an INS of 15 characters with a valid key"})
    if actor.is_lab and if_match is None and not objects_to_sharing:
        prescription = _take_if_free(session, normalised, actor, patient_ins, ins_key)
        if prescription is not None:
            ins_match = True if patient_ins and prescription.ins_pseudonym else None
            record(session, prescription, "taken", actor, {"ins_checked": ins_match is not None})
            return _answer(session, prescription, actor, ins_match)
    prescription = find(session, normalised, lock=True)
    if prescription is None:
        session.rollback()
        raise PrescriptionNotFound()
    apply_expiry(session, prescription)
    try:
        next_status = lifecycle.check(
            prescription.status, lifecycle.TAKE, role(prescription, actor)
        )
        if if_match is not None and prescription.version not in if_match:
            raise StaleVersion()
        ins_match = _check_patient(session, prescription, patient_ins, ins_key, actor)
    except Exception:
        session.commit()  # keeps a just-recorded expiry
        raise
    if next_status != prescription.status:
        prescription.status = next_status
        for column, value in _held_by(actor).items():
            setattr(prescription, column, value)
        touch(prescription)
        record(session, prescription, "taken", actor, {"ins_checked": ins_match is not None})
    if objects_to_sharing and not prescription.sharing_withheld:
        prescription.sharing_withheld = True
        touch(prescription)
        record(session, prescription, "sharing_withheld", actor, {})
    return _answer(session, prescription, actor, ins_match)


def _answer(
    session: Session, prescription: Prescription, actor: Actor, ins_match: bool | None
) -> dict[str, Any]:
    body = views.full(prescription, actor, ins_match=ins_match)
    session.commit()
    return body


def _held_by(actor: Actor) -> dict[str, Any]:
    """The columns a laboratory's taking charge sets."""
    return {
        "lab_id": actor.client_pk,
        "last_lab_id": actor.client_pk,
        "lab_finess": actor.identifier,
        "lab_name": actor.name,
    }


def _recent_mismatches(prescription_id, now: datetime) -> list:
    """The conditions on `events` of the INS mismatches that count towards the pause."""
    return [
        Event.prescription_id == prescription_id,
        Event.type == "ins_mismatch",
        Event.at > now - INS_MISMATCH_WINDOW,
    ]


# Taking a free prescription: any laboratory, or the one that executed it before (a renewal).
(_TAKEN,) = {
    lifecycle.check(ACTIVE, lifecycle.TAKE, role) for role in (lifecycle.LAB, lifecycle.FORMER)
}


def _take_if_free(
    session: Session, code: str, actor: Actor, patient_ins: str | None, key: bytes
) -> Prescription | None:
    """The common scan in one statement: an active prescription within its validity, whose
    patient is the one given (or not checked), is taken by this laboratory. None: anything
    else (unknown, expired, held, a patient mismatch, paused checks...), which `take` then
    works out row by row, with the same answers."""
    now = utcnow()
    conditions = [
        Prescription.code == code,
        Prescription.status == ACTIVE,
        Prescription.expires_at > now,
    ]
    if patient_ins is not None:
        recent_mismatches = (
            select(func.count()).where(*_recent_mismatches(Prescription.id, now)).scalar_subquery()
        )
        conditions.append(
            or_(
                Prescription.ins_pseudonym.is_(None),
                and_(
                    Prescription.ins_pseudonym == ins_pseudonym(patient_ins, key=key),
                    recent_mismatches < INS_MISMATCHES_PER_HOUR,
                ),
            )
        )
    statement = (
        update(Prescription)
        .where(*conditions)
        .values(
            status=_TAKEN,
            **_held_by(actor),
            version=Prescription.version + 1,  # touch(): a new version for every change
            updated_at=now,
        )
        .returning(Prescription)
    )
    prescription = session.scalars(statement).one_or_none()
    if prescription is not None and prescription.version == 2:
        # Untouched until now: no laboratory ever held it, so no proposal can exist.
        set_committed_value(prescription, "proposals", [])
    return prescription


def _check_patient(
    session: Session,
    prescription: Prescription,
    patient_ins: str | None,
    key: bytes,
    actor: Actor,
) -> bool | None:
    """Whether the INS given is the patient's. Each mismatch is recorded in the history; after
    INS_MISMATCHES_PER_HOUR of them the check is paused for the prescription (an oracle
    otherwise: a guessed INS would be confirmed in a few hundred tries)."""
    if patient_ins is None or prescription.ins_pseudonym is None:
        return None
    recent = list(
        session.scalars(select(Event.at).where(*_recent_mismatches(prescription.id, utcnow())))
    )
    if len(recent) >= INS_MISMATCHES_PER_HOUR:
        retry = min(recent) + INS_MISMATCH_WINDOW - utcnow()
        raise InsChecksPaused(retry_after=max(1, int(retry.total_seconds()) + 1))
    if ins_pseudonym(patient_ins, key=key) != prescription.ins_pseudonym:
        record(session, prescription, "ins_mismatch", actor, {})
        if len(recent) + 1 == INS_MISMATCHES_PER_HOUR:
            record(session, prescription, "ins_checks_paused", actor, {"hours": 1})
        raise PatientMismatch()
    return True


@writes
def release(
    *, session: Session, actor: Actor, code: str, if_match: Collection[int] | None = None
) -> dict[str, Any]:
    """The patient went elsewhere: the prescription is active again for any laboratory."""
    prescription = find_for(session, actor, code, lifecycle.RELEASE)
    _check_version(session, prescription, if_match)
    prescription.status = lifecycle.check(prescription.status, lifecycle.RELEASE, lifecycle.HOLDER)
    proposals.withdraw_pending(session, prescription, actor, "released")
    _end_hold(prescription, forget_laboratory=True)
    touch(prescription)
    record(session, prescription, "released", actor, {})
    body = views.full(prescription, actor)
    session.commit()
    return body


def _check_version(
    session: Session, prescription: Prescription, if_match: Collection[int] | None
) -> None:
    """StaleVersion unless the prescription is at one of the versions in `if_match` (when
    given: FHIR's If-Match on the Task operations)."""
    if if_match is not None and prescription.version not in if_match:
        session.rollback()
        raise StaleVersion()


def _end_hold(prescription: Prescription, *, forget_laboratory: bool) -> None:
    prescription.lab_id = None
    if forget_laboratory:
        prescription.lab_finess = None
        prescription.lab_name = None
        prescription.last_lab_id = None


@writes
def report(
    *,
    session: Session,
    actor: Actor,
    code: str,
    outcomes: list[dict[str, Any]],
    if_match: Collection[int] | None = None,
) -> dict[str, Any]:
    """Exams done or not done; when none is left requested, this execution ends."""
    prescription = find_for(session, actor, code, lifecycle.REPORT)
    _check_version(session, prescription, if_match)
    lines = {line.line_id: line for line in prescription.lines}
    _validate_outcomes(outcomes, lines)
    _check_not_awaiting_answer(prescription, outcomes)
    for outcome in outcomes:
        line = lines[outcome["line_id"]]
        line.status = DONE if outcome["outcome"] == "done" else NOT_DONE
        line.outcome_reason = outcome.get("reason")
        kind = "line_done" if line.status == DONE else "line_not_done"
        record(
            session,
            prescription,
            kind,
            actor,
            {"line": line.line_id, "reason": outcome.get("reason")},
        )
    if not any(line.status == REQUESTED for line in prescription.lines):
        _end_execution(session, prescription, actor)
    touch(prescription)
    body = views.full(prescription, actor)
    session.commit()
    return body


def _validate_outcomes(outcomes: list[dict[str, Any]], lines: dict[str, Line]) -> None:
    errors: dict[str, str] = {}
    seen: set[str] = set()
    if not outcomes:
        errors["lines"] = "report at least one line"
    for index, outcome in enumerate(outcomes):
        path = f"lines[{index}]"
        line_id = outcome["line_id"]
        if line_id not in lines:
            errors[f"{path}.line_id"] = f"no line {line_id!r} in this prescription"
        elif line_id in seen:
            errors[f"{path}.line_id"] = f"line {line_id!r} is reported twice"
        if outcome["outcome"] == "not_done" and not (outcome.get("reason") or "").strip():
            errors[f"{path}.reason"] = "a line not done needs a reason"
        seen.add(line_id)
    if errors:
        raise ValidationFailed(errors)
    for outcome in outcomes:
        line = lines[outcome["line_id"]]
        if line.status != REQUESTED:
            raise LineNotRequested(f"Line {line.line_id} is {line.status}, not requested.")


def _check_not_awaiting_answer(prescription: Prescription, outcomes: list[dict[str, Any]]) -> None:
    pending, blocked = proposals.blocked_lines(prescription)
    for outcome in outcomes:
        if outcome["line_id"] in blocked:
            raise ProposalPending(
                f"Line {outcome['line_id']} is changed by proposal {pending.proposal_id}, which"
                " awaits the prescriber's answer (or withdraw it).",
                proposal=pending.proposal_id,
            )


def _end_execution(session: Session, prescription: Prescription, actor: Actor) -> None:
    proposals.withdraw_pending(session, prescription, actor, "execution ended")
    for line in prescription.lines:
        if line.status == DONE and line.renewals_left > 0:
            line.status = REQUESTED
            line.renewals_left -= 1
            line.outcome_reason = None
            record(
                session,
                prescription,
                "renewed",
                actor,
                {"line": line.line_id, "renewals_left": line.renewals_left},
            )
    _end_hold(prescription, forget_laboratory=False)
    renewed = any(line.status == REQUESTED for line in prescription.lines)
    action = lifecycle.RENEW if renewed else lifecycle.COMPLETE
    prescription.status = lifecycle.check(prescription.status, action, lifecycle.SYSTEM)
    if not renewed:
        record(session, prescription, "completed", actor, {})


@writes
def note_scans_blocked(*, session: Session, actor: Actor) -> None:
    """Audit: this laboratory scanned too many unknown codes and is paused."""
    record(session, None, "failed_scans_limit", actor, {})
    session.commit()
