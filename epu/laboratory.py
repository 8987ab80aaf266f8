"""Laboratory-side use cases: take charge, release, adapt, report outcomes. Each commits once."""

from collections.abc import Collection
from typing import Any

from sqlalchemy.orm import Session

from epu import catalogue as catalogues
from epu import codes, lifecycle, views
from epu.actors import Actor
from epu.audit import record
from epu.errors import (
    InvalidPrescriptionCode,
    LineNotRequested,
    PatientMismatch,
    PrescriptionNotFound,
    StaleVersion,
    ValidationFailed,
)
from epu.identifiers import ins_pseudonym, is_ins
from epu.lines import check_line
from epu.prescriptions import apply_expiry, find, new_line, parse_code, role, touch
from epu.statuses import (
    DONE,
    NOT_DONE,
    REMOVED,
    REPLACED,
    REQUESTED,
)
from models import Line, Prescription
from models.db import writes


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
        ins_match = _check_patient(prescription, patient_ins, ins_key)
    except Exception:
        session.commit()  # keeps a just-recorded expiry
        raise
    if next_status != prescription.status:
        prescription.status = next_status
        prescription.lab_id = actor.client_pk
        prescription.last_lab_id = actor.client_pk
        prescription.lab_finess = actor.identifier
        prescription.lab_name = actor.name
        touch(prescription)
        record(session, prescription, "taken", actor, {"ins_checked": ins_match is not None})
    if objects_to_sharing and not prescription.sharing_withheld:
        prescription.sharing_withheld = True
        touch(prescription)
        record(session, prescription, "sharing_withheld", actor, {})
    body = views.full(prescription, actor, ins_match=ins_match)
    session.commit()
    return body


def _check_patient(prescription: Prescription, patient_ins: str | None, key: bytes) -> bool | None:
    if patient_ins is None or prescription.ins_pseudonym is None:
        return None
    if ins_pseudonym(patient_ins, key=key) != prescription.ins_pseudonym:
        raise PatientMismatch()
    return True


@writes
def release(
    *, session: Session, actor: Actor, code: str, if_match: Collection[int] | None = None
) -> dict[str, Any]:
    """The patient went elsewhere: the prescription is active again for any laboratory."""
    prescription = _held(session, actor, code, lifecycle.RELEASE, if_match)
    prescription.status = lifecycle.check(prescription.status, lifecycle.RELEASE, lifecycle.HOLDER)
    _end_hold(prescription, forget_laboratory=True)
    touch(prescription)
    record(session, prescription, "released", actor, {})
    body = views.full(prescription, actor)
    session.commit()
    return body


def _held(
    session: Session,
    actor: Actor,
    code: str,
    action: str,
    if_match: Collection[int] | None = None,
) -> Prescription:
    """The prescription this laboratory holds, locked, when the table allows `action` (and it
    is at one of the versions in `if_match`, when given)."""
    prescription = find(session, parse_code(code), lock=True)
    if prescription is None:
        raise PrescriptionNotFound()
    lifecycle.check(prescription.status, action, role(prescription, actor))
    if if_match is not None and prescription.version not in if_match:
        session.rollback()
        raise StaleVersion()
    return prescription


def _end_hold(prescription: Prescription, *, forget_laboratory: bool) -> None:
    prescription.lab_id = None
    if forget_laboratory:
        prescription.lab_finess = None
        prescription.lab_name = None
        prescription.last_lab_id = None


@writes
def modify(
    *,
    session: Session,
    actor: Actor,
    code: str,
    if_match: set[int] | None,
    changes: list[dict[str, Any]],
) -> dict[str, Any]:
    """The biologist adds, removes or replaces exams, each with a reason; all or nothing.

    `if_match` holds the versions the client read (None: any version, as `If-Match: *`).
    """
    prescription = _held(session, actor, code, lifecycle.APPLY)
    if if_match is not None and prescription.version not in if_match:
        session.rollback()
        raise StaleVersion()
    catalogue = catalogues.current(session)
    _validate_changes(prescription, changes, catalogue)
    for change in changes:
        _apply_change(session, prescription, change, catalogue, actor)
    prescription.modified = True
    touch(prescription)
    body = views.full(prescription, actor)
    session.commit()
    return body


def _validate_changes(
    prescription: Prescription, changes: list[dict[str, Any]], catalogue: catalogues.Catalogue
) -> None:
    errors: dict[str, str] = {}
    lines = {line.line_id: line for line in prescription.lines}
    touched: set[str] = set()
    if not changes:
        errors["changes"] = "at least one change is needed"
    for index, change in enumerate(changes):
        path = f"changes[{index}]"
        if not (change.get("reason") or "").strip():
            errors[f"{path}.reason"] = "every change needs a reason"
        if change["op"] in ("add", "replace"):
            if change.get("line") is None:
                errors[f"{path}.line"] = f"'{change['op']}' needs the new line"
            else:
                errors.update(check_line(change["line"], f"{path}.line", catalogue))
        if change["op"] in ("remove", "replace"):
            line_id = change.get("line_id")
            if line_id not in lines:
                errors[f"{path}.line_id"] = f"no line {line_id!r} in this prescription"
            elif line_id in touched:
                errors[f"{path}.line_id"] = f"line {line_id!r} is changed twice"
            elif lines[line_id].status != REQUESTED:
                raise LineNotRequested(f"Line {line_id} is {lines[line_id].status}, not requested.")
            touched.add(line_id)
    if errors:
        raise ValidationFailed(errors)


def _apply_change(
    session: Session,
    prescription: Prescription,
    change: dict[str, Any],
    catalogue: catalogues.Catalogue,
    actor: Actor,
) -> None:
    detail: dict[str, Any] = {"op": change["op"], "reason": change["reason"]}
    if change["op"] in ("remove", "replace"):
        old = next(line for line in prescription.lines if line.line_id == change["line_id"])
        old.status = REMOVED if change["op"] == "remove" else REPLACED
        old.outcome_reason = change["reason"]
        detail["line"] = old.line_id
    if change["op"] in ("add", "replace"):
        position = max(line.position for line in prescription.lines) + 1
        added = new_line(
            change["line"],
            position,
            catalogue,
            origin="laboratory",
            replaces=change.get("line_id") if change["op"] == "replace" else None,
        )
        prescription.lines.append(added)
        detail["new_line"] = added.line_id
        detail["loinc"] = added.loinc
        detail["text"] = added.text
    record(session, prescription, "modified", actor, detail)


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
    prescription = _held(session, actor, code, lifecycle.REPORT, if_match)
    lines = {line.line_id: line for line in prescription.lines}
    _validate_outcomes(outcomes, lines)
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


def _end_execution(session: Session, prescription: Prescription, actor: Actor) -> None:
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
