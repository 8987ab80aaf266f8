"""A nurse records the specimens she collected at home, and may correct her last sampling.

Each use case commits once. A sampling changes no line: the laboratory that receives the
specimens still reports each exam; the prescriber's status shows the latest sampling.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epu import lifecycle, nurses, sampling_views, specimen_types, views
from epu.actors import Actor
from epu.audit import record
from epu.errors import (
    LineNotRequested,
    SamplingNotCorrectable,
    SamplingNotFound,
    ValidationFailed,
)
from epu.identifiers import is_finess
from epu.prescriptions import apply_expiry, can_see, touch
from epu.statuses import REQUESTED
from models import Prescription, Sampling
from models.base import utcnow
from models.db import writes

COLLECTED = "collected"
PARTIALLY_COLLECTED = "partially_collected"
SAMPLING_STATUSES = (COLLECTED, PARTIALLY_COLLECTED)
CORRECTION_WINDOW = timedelta(hours=24)
# A nurse's device may run a little ahead of the server's clock.
CLOCK_TOLERANCE = timedelta(minutes=5)
MAX_SPECIMENS = 20
MAX_COUNT = 10


@writes
def record_sampling(
    *, session: Session, actor: Actor, code: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A new sampling of a prescription she scanned; 201 with the sampling."""
    prescription = _open_for_sampling(session, actor, code)
    now = utcnow()
    _validate(prescription, data, now)
    sampling = Sampling(
        public_id=uuid.uuid4().hex, nurse_id=actor.client_pk, created_at=now, updated_at=now
    )
    _fill(sampling, prescription, actor, data)
    prescription.samplings.append(sampling)
    _summarise(prescription, sampling)
    record(session, prescription, "sampled", actor, _event_detail(sampling))
    body = sampling_views.sampling(sampling, show_nurse=True)
    session.commit()
    return body


@writes
def correct_sampling(
    *, session: Session, actor: Actor, code: str, sampling_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Replace her last sampling of this prescription, within CORRECTION_WINDOW of recording it."""
    prescription = _open_for_sampling(session, actor, code)
    own = [item for item in prescription.samplings if item.nurse_id == actor.client_pk]
    sampling = next((item for item in own if item.public_id == sampling_id), None)
    if sampling is None:
        session.rollback()
        raise SamplingNotFound()
    now = utcnow()
    if sampling is not own[-1]:
        session.rollback()
        raise SamplingNotCorrectable(
            "Only your last sampling of this prescription can be corrected."
        )
    if now - sampling.created_at > CORRECTION_WINDOW:
        session.rollback()
        raise SamplingNotCorrectable(
            "A sampling can be corrected within 24 hours of recording it: record a new one."
        )
    _validate(prescription, data, now)
    _fill(sampling, prescription, actor, data)
    sampling.updated_at = now
    latest = prescription.samplings[-1]
    _summarise(prescription, latest)
    record(session, prescription, "sampling_corrected", actor, _event_detail(sampling))
    body = sampling_views.sampling(sampling, show_nurse=True)
    session.commit()
    return body


def _open_for_sampling(session: Session, actor: Actor, code: str) -> Prescription:
    prescription = nurses.find_scanned(session, actor, code, lock=True)
    apply_expiry(session, prescription)
    try:
        lifecycle.check(prescription.status, lifecycle.SAMPLE, lifecycle.NURSE)
    except Exception:
        session.commit()  # keeps a just-recorded expiry
        raise
    return prescription


def _validate(prescription: Prescription, data: dict[str, Any], now: datetime) -> None:
    """Every rule at once, each error keyed by its path; then lines no longer requested (409)."""
    errors: dict[str, str] = {}
    collected_at: datetime = data["collected_at"]
    if collected_at > now + CLOCK_TOLERANCE:
        errors["collected_at"] = "must not be in the future"
    elif collected_at < prescription.created_at:
        errors["collected_at"] = "must not be before the prescription was written (created_at)"
    lines = {line.line_id: line for line in prescription.lines}
    seen: set[str] = set()
    named: list[str] = []

    def check_line(line_id: str, path: str) -> None:
        if line_id not in lines:
            errors[path] = f"no line {line_id!r} in this prescription"
        elif line_id in seen:
            errors[path] = (
                f"line {line_id!r} is given twice: each line at most once across specimens "
                "and not_collected"
            )
        else:
            named.append(line_id)
        seen.add(line_id)

    if not data["specimens"]:
        errors["specimens"] = "at least one specimen"
    for index, specimen in enumerate(data["specimens"]):
        path = f"specimens[{index}]"
        if not specimen_types.is_specimen_type(specimen["type"]):
            errors[f"{path}.type"] = (
                f"{specimen['type']!r} is not a code of the HL7 specimen type value set "
                f"({specimen_types.value_set_name()})"
            )
        if not specimen["lines"]:
            errors[f"{path}.lines"] = "at least one line"
        for position, line_id in enumerate(specimen["lines"]):
            check_line(line_id, f"{path}.lines[{position}]")
    for index, item in enumerate(data.get("not_collected") or []):
        if not (item.get("reason") or "").strip():
            errors[f"not_collected[{index}].reason"] = "say why the line was not collected"
        check_line(item["line"], f"not_collected[{index}].line")
    destination = data.get("destination")
    if destination and not is_finess(destination["finess"]):
        errors["destination.finess"] = "must be a FINESS number (9 digits, valid Luhn key)"
    if errors:
        raise ValidationFailed(errors)
    for line_id in named:
        if lines[line_id].status != REQUESTED:
            raise LineNotRequested(f"Line {line_id} is no longer requested.")


def _fill(
    sampling: Sampling, prescription: Prescription, actor: Actor, data: dict[str, Any]
) -> None:
    specimens = [
        {"type": item["type"], "lines": list(item["lines"]), "count": item["count"]}
        for item in data["specimens"]
    ]
    collected = {line_id for item in specimens for line_id in item["lines"]}
    requested = {line.line_id for line in prescription.lines if line.status == REQUESTED}
    sampling.nurse_rpps = actor.identifier
    sampling.nurse_name = actor.name
    sampling.collected_at = data["collected_at"].astimezone(UTC)
    sampling.status = COLLECTED if requested <= collected else PARTIALLY_COLLECTED
    sampling.specimens = specimens
    sampling.not_collected = [
        {"line": item["line"], "reason": item["reason"].strip()}
        for item in data.get("not_collected") or []
    ]
    sampling.comment = (data.get("comment") or "").strip() or None
    destination = data.get("destination")
    sampling.destination_finess = destination["finess"] if destination else None


def _summarise(prescription: Prescription, latest: Sampling) -> None:
    """The status poll reads the latest sampling from the prescription's own row."""
    prescription.sampling_status = latest.status
    prescription.sampled_at = latest.collected_at
    touch(prescription)


def _event_detail(sampling: Sampling) -> dict[str, Any]:
    return {
        "sampling": sampling.public_id,
        "status": sampling.status,
        "collected_at": sampling.collected_at.isoformat(),
        "specimens": [
            {"type": item["type"], "lines": item["lines"], "count": item["count"]}
            for item in sampling.specimens
        ],
        "not_collected": [item["line"] for item in sampling.not_collected],
    }


def for_reading(*, session: Session, actor: Actor, sampling_id: str) -> tuple[str, dict[str, Any]]:
    """A sampling by its id, with its prescription's code, for whoever may see it: the nurse
    who recorded it (on what she may still see), the prescriber, the laboratory that holds or
    held the prescription. Anything else: SamplingNotFound."""
    sampling = session.scalar(select(Sampling).where(Sampling.public_id == sampling_id))
    prescription = sampling and session.get(Prescription, sampling.prescription_id)
    if actor.is_nurse:
        visible = (
            sampling is not None
            and sampling.nurse_id == actor.client_pk
            and nurses.may_see(session, prescription, actor)
        )
    else:
        visible = sampling is not None and can_see(prescription, actor)
    if not visible:
        session.rollback()
        raise SamplingNotFound()
    shown = not views.execution_hidden(prescription, actor)
    body = sampling_views.sampling(sampling, show_nurse=shown)
    session.rollback()
    return prescription.code, body
