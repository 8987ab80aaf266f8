"""Laboratory-side use cases: take charge, release, adapt, report outcomes. Each commits once."""

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
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
from models import Event, Line, Prescription, Proposal, Sampling
from models.base import snapshot, utcnow
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
    """The columns a laboratory's taking charge sets (both scan paths)."""
    values = (actor.client_pk, actor.client_pk, actor.identifier, actor.name)
    return dict(zip(_HELD_COLUMNS, values, strict=True))


_HELD_COLUMNS = ("lab_id", "last_lab_id", "lab_finess", "lab_name")


def _recent_mismatches(prescription_id, since) -> list:
    """The conditions on `events` of the INS mismatches that count towards the pause."""
    return [
        Event.prescription_id == prescription_id,
        Event.type == "ins_mismatch",
        Event.at > since,
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
    works out row by row, with the same answers.

    What it answers is a snapshot of the row as taken, with its lines, outside of the session:
    the statement has written everything, and only the view and the event are built from it."""
    now = utcnow()
    parameters = {f"new_{column}": value for column, value in _held_by(actor).items()}
    parameters.update(scanned=code, now=now, mismatches_since=now - INS_MISMATCH_WINDOW)
    if patient_ins is not None:
        parameters["pseudonym"] = ins_pseudonym(patient_ins, key=key)
    connection = session.connection()
    statement = _TAKE_CHECKING_PATIENT if patient_ins is not None else _TAKE
    row = connection.execute(statement, parameters).one_or_none()
    if row is None:
        return None
    prescription = snapshot(Prescription, row._mapping)
    lines = connection.execute(_LINES_OF, {"prescription_id": row.id})
    # set_committed_value: the snapshot stays out of the session, and no backref touches the
    # persistent proposals and samplings loaded for it.
    set_committed_value(prescription, "lines", [snapshot(Line, line._mapping) for line in lines])
    # At its second version it was never held, so no proposal exists; never sampled, no sampling.
    proposals = [] if row.version == 2 else _of_prescription(session, Proposal, row.id)
    samplings = [] if row.sampled_at is None else _of_prescription(session, Sampling, row.id)
    set_committed_value(prescription, "proposals", proposals)
    set_committed_value(prescription, "samplings", samplings)
    return prescription


def _of_prescription(session: Session, kind: type[Proposal | Sampling], prescription_id: int):
    statement = select(kind).where(kind.prescription_id == prescription_id).order_by(kind.id)
    return list(session.scalars(statement))


def _take_statement(*, checking_patient: bool):
    """Built once per variant: compiling an ORM-enabled UPDATE per scan and loading its
    entity cost more than the statement itself (py-spy)."""
    table = Prescription.__table__.c
    conditions = [
        table.code == bindparam("scanned"),
        table.status == ACTIVE,
        table.expires_at > bindparam("now"),
    ]
    if checking_patient:
        recent_mismatches = select(func.count()).where(
            *_recent_mismatches(table.id, bindparam("mismatches_since"))
        )
        conditions.append(
            or_(
                table.ins_pseudonym.is_(None),
                and_(
                    table.ins_pseudonym == bindparam("pseudonym"),
                    recent_mismatches.scalar_subquery() < INS_MISMATCHES_PER_HOUR,
                ),
            )
        )
    held = {column: bindparam(f"new_{column}") for column in _HELD_COLUMNS}
    return (
        update(Prescription.__table__)
        .where(*conditions)
        .values(
            status=_TAKEN,
            **held,
            version=table.version + 1,  # touch(): a new version for every change
            updated_at=bindparam("now"),
        )
        .returning(*Prescription.__table__.c)
    )


_TAKE = _take_statement(checking_patient=False)
_TAKE_CHECKING_PATIENT = _take_statement(checking_patient=True)
_LINES_OF = (
    select(Line.__table__)
    .where(Line.__table__.c.prescription_id == bindparam("prescription_id"))
    .order_by(Line.__table__.c.position)
)


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
        session.scalars(
            select(Event.at).where(
                *_recent_mismatches(prescription.id, utcnow() - INS_MISMATCH_WINDOW)
            )
        )
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
