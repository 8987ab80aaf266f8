"""Finding a patient's open prescriptions without the paper: by INS and birth date.

The INS reaches this module only to be pseudonymised; it is never stored, logged or returned.
A birth date that does not match lists nothing, exactly as a patient with no prescription: the
two conditions are one query, so neither the answer nor its cost tells which one failed.
"""

from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session, selectinload

from epu.actors import Actor
from epu.audit import record, record_each
from epu.errors import ValidationFailed
from epu.identifiers import ins_pseudonym, is_ins
from epu.statuses import ACTIVE, IN_PROGRESS, REQUESTED
from models import Prescription
from models.base import latest_today, utcnow
from models.db import writes
from models.tables import OPEN_ROWS

PRESENCE_KINDS = ("carte_vitale", "apcv", "ins_datamatrix", "declared")
# A patient has a handful of open prescriptions; this bounds what one lookup can cost.
MAX_LISTED = 50


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def item(prescription: Prescription, actor: Actor) -> dict[str, Any]:
    """What a lookup tells of one prescription: enough to choose it, nothing of the patient."""
    requested = [line for line in prescription.lines if line.status == REQUESTED]
    return {
        "code": prescription.code,
        "status": prescription.status,
        "created_at": _iso(prescription.created_at),
        "expires_at": _iso(prescription.expires_at),
        "prescriber": {"rpps": prescription.prescriber_rpps, "name": prescription.prescriber_name},
        "lines": len(requested),
        "urgent": any(line.urgent for line in requested),
        "held_by_caller": prescription.status == IN_PROGRESS
        and prescription.lab_id == actor.client_pk,
    }


def _check(ins: str, birth_date: date, presence: str) -> None:
    errors = {}
    if not is_ins(ins):
        errors["ins"] = "must be an INS of 15 characters with a valid key (97 - NIR mod 97)"
    if birth_date > latest_today():
        errors["birth_date"] = "must not be in the future"
    if presence not in PRESENCE_KINDS:
        errors["presence"] = f"must be one of {', '.join(PRESENCE_KINDS)}"
    if errors:
        raise ValidationFailed(errors)


# Built once: the statement's construction was a tenth of a lookup's CPU (py-spy).
_SERVABLE = (
    select(Prescription)
    .where(
        Prescription.ins_pseudonym == bindparam("pseudonym"),
        Prescription.patient_birth_date == bindparam("birth_date"),
        or_(
            and_(Prescription.status == ACTIVE, Prescription.expires_at > bindparam("now")),
            and_(Prescription.status == IN_PROGRESS, Prescription.lab_id == bindparam("caller")),
        ),
        OPEN_ROWS,  # implied by the above; written so that ix_prescriptions_open_patient serves
    )
    .options(selectinload(Prescription.lines))
    .order_by(Prescription.created_at.desc(), Prescription.id.desc())
    .limit(MAX_LISTED)
)


@writes
def lookup(
    *,
    session: Session,
    actor: Actor,
    ins: str,
    birth_date: date,
    presence: str,
    ins_key: bytes,
    view: Callable[[Prescription, Actor], dict[str, Any]] = item,
) -> dict[str, Any]:
    """The patient's open prescriptions that the caller may serve: active ones, and those in
    progress held by the caller (never those another laboratory holds). Audited on each listed
    prescription (`looked_up`) and once for the lookup itself (`patient_lookup`, without INS)."""
    _check(ins, birth_date, presence)
    parameters = {
        "pseudonym": ins_pseudonym(ins, key=ins_key),
        "birth_date": birth_date,
        "now": utcnow(),
        "caller": actor.client_pk,
    }
    found = list(session.scalars(_SERVABLE, parameters))
    record_each(session, found, "looked_up", actor, {"presence": presence})
    record(session, None, "patient_lookup", actor, {"presence": presence, "listed": len(found)})
    items = [view(prescription, actor) for prescription in found]
    session.commit()
    return {"items": items}
