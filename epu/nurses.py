"""The home nurse (IDEL): scans a prescription to read it, without taking charge of it.

A nurse sees only what she scanned, for ACCESS_DAYS after her last scan; anything else answers
exactly as an unknown code. She never sees which laboratory holds or held it, nor outcomes.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epu import lifecycle, sampling_views, views
from epu.actors import Actor
from epu.audit import record
from epu.errors import PatientMismatch, PrescriptionNotFound, ValidationFailed
from epu.identifiers import ins_pseudonym, is_ins
from epu.laboratory import normalise_scanned
from epu.prescriptions import apply_expiry, find, parse_code
from epu.statuses import REQUESTED
from models import NurseRead, Prescription
from models.base import utcnow
from models.db import writes

ACCESS_DAYS = 30


def view(prescription: Prescription, actor: Actor, **extra: Any) -> dict[str, Any]:
    """The prescription as a laboratory reads it, less what the laboratory did: the lines still
    requested, no laboratory, no outcomes; her own samplings."""
    body = views.full(prescription, actor, **extra)
    body["modified"] = None
    body["laboratory"] = None
    body["lines"] = [
        {**line, "renewals_left": None, "reason": None}
        for line in body["lines"]
        if line["status"] == REQUESTED
    ]
    body["samplings"] = [
        sampling_views.sampling(sampling, show_nurse=True)
        for sampling in prescription.samplings
        if sampling.nurse_id == actor.client_pk
    ]
    return body


def _patient_matches(prescription: Prescription, patient_ins: str | None, key: bytes):
    if patient_ins is None or prescription.ins_pseudonym is None:
        return None
    if ins_pseudonym(patient_ins, key=key) != prescription.ins_pseudonym:
        raise PatientMismatch()
    return True


@writes
def scan(
    *, session: Session, actor: Actor, code: str, ins_key: bytes, patient_ins: str | None = None
) -> dict[str, Any]:
    """The nurse reads a prescription by its code (typed or photographed): it stays as it was,
    any laboratory may still take it. Recorded as `read_by_nurse`."""
    normalised = normalise_scanned(code)
    if patient_ins is not None and not is_ins(patient_ins):
        raise ValidationFailed({"patient_ins": "must be an INS of 15 characters with a valid key"})
    prescription = find(session, normalised, lock=True)  # serialises her access row's upsert
    if prescription is None:
        session.rollback()
        raise PrescriptionNotFound()
    apply_expiry(session, prescription)
    try:
        lifecycle.check(prescription.status, lifecycle.NURSE_READ, lifecycle.NURSE)
        ins_match = _patient_matches(prescription, patient_ins, ins_key)
    except Exception:
        session.commit()  # keeps a just-recorded expiry
        raise
    _grant(session, prescription, actor, utcnow())
    record(session, prescription, "read_by_nurse", actor, {"ins_checked": ins_match is not None})
    body = view(prescription, actor, ins_match=ins_match)
    session.commit()
    return body


def _grant(session: Session, prescription: Prescription, actor: Actor, now: datetime) -> None:
    access = session.scalar(
        select(NurseRead).where(
            NurseRead.prescription_id == prescription.id, NurseRead.nurse_id == actor.client_pk
        )
    )
    if access is None:
        session.add(NurseRead(prescription_id=prescription.id, nurse_id=actor.client_pk))
    else:
        access.scanned_at = now


def may_see(session: Session, prescription: Prescription, actor: Actor) -> bool:
    """She scanned it within ACCESS_DAYS."""
    if not actor.is_nurse:
        return False
    scanned_at = session.scalar(
        select(NurseRead.scanned_at).where(
            NurseRead.prescription_id == prescription.id, NurseRead.nurse_id == actor.client_pk
        )
    )
    return scanned_at is not None and scanned_at > utcnow() - timedelta(days=ACCESS_DAYS)


def find_scanned(session: Session, actor: Actor, raw_code: str, *, lock: bool) -> Prescription:
    """A prescription this nurse may see, or PrescriptionNotFound (as for an unknown code)."""
    prescription = find(session, parse_code(raw_code), lock=lock)
    if prescription is None or not may_see(session, prescription, actor):
        session.rollback()
        raise PrescriptionNotFound()
    return prescription
