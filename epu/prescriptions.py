"""Prescriber-side use cases: create, read, poll, list, cancel. Each commits once."""

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Lock
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from epu import catalogue as catalogues
from epu import codes, lifecycle, views
from epu.actors import Actor
from epu.audit import RepeatedReads, record, record_read
from epu.errors import (
    IdempotencyKeyReused,
    NotCancellable,
    PrescriptionNotFound,
    ValidationFailed,
)
from epu.identifiers import ins_pseudonym, is_ins, is_phone, is_rpps
from epu.lines import check_line, context_with_labels, missing_context
from epu.search import own_prescriptions
from epu.statuses import ACTIVE, MAX_LINES, OPEN, REQUESTED
from models import IdempotencyRecord, Line, Prescription
from models.base import latest_today, snapshot, utcnow
from models.db import read_outside_transaction, writes
from models.tables import OPEN_ROWS

MAX_COPIES = 10


@dataclass(frozen=True)
class Created:
    body: dict[str, Any]
    replayed: bool


class NotModified(Exception):
    """The client's ETag is current: nothing to send."""

    def __init__(self, etag: str):
        super().__init__(etag)
        self.etag = etag


# ---- creation -------------------------------------------------------------------------------


@writes
def create(
    *,
    session: Session,
    actor: Actor,
    data: dict[str, Any],
    ins_key: bytes,
    validity_days: int,
    idempotency_key: str | None = None,
    order_identifier: str | None = None,
) -> Created:
    """Validate and store a new prescription; a retry with the same Idempotency-Key replays.

    `order_identifier`: the prescriber software's own identifier of the order ("system|value");
    while a prescription of this prescriber holds it, a creation under it answers that one
    (replayed), whatever its content."""
    if order_identifier:
        existing = _by_order_identifier(session, actor, order_identifier)
        if existing:
            return existing
    request_hash = _hash(data)
    if idempotency_key:
        replay = _replay(session, actor, idempotency_key, request_hash)
        if replay:
            return replay
    catalogue = catalogues.current(session)
    _validate(data, catalogue)
    prescription = _new_prescription(actor, data, catalogue, ins_key, validity_days)
    prescription.order_identifier = order_identifier
    _store(session, prescription)
    body = views.full(
        prescription, actor, warnings=_warnings(session, prescription, data, catalogue)
    )
    record(session, prescription, "created", actor, {"lines": len(prescription.lines)})
    if idempotency_key:
        session.add(
            IdempotencyRecord(
                client_id=actor.client_pk,
                key=idempotency_key,
                request_hash=request_hash,
                prescription_id=prescription.id,
                response_body=json.dumps(body),
            )
        )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = order_identifier and _by_order_identifier(session, actor, order_identifier)
        if existing:
            return existing
        replay = _replay(session, actor, idempotency_key, request_hash) if idempotency_key else None
        if replay is None:
            raise
        return replay
    return Created(body, replayed=False)


def _by_order_identifier(session: Session, actor: Actor, identifier: str) -> Created | None:
    prescription = session.scalar(
        select(Prescription)
        .where(
            Prescription.prescriber_id == actor.client_pk,
            Prescription.order_identifier == identifier,
        )
        .options(selectinload(Prescription.lines))
    )
    body = views.full(prescription, actor) if prescription is not None else None
    session.rollback()
    return Created(body, replayed=True) if body is not None else None


def code_of_order(*, session: Session, actor: Actor, identifier: str) -> str | None:
    """The code of the caller's prescription that holds this order identifier, if any."""
    code = session.scalar(
        select(Prescription.code).where(
            Prescription.prescriber_id == actor.client_pk,
            Prescription.order_identifier == identifier,
        )
    )
    session.rollback()
    return code


def _store(session: Session, prescription: Prescription) -> None:
    """One INSERT ... RETURNING id, one executemany for the lines, as Core statements built
    once: the ORM's unit of work (and its bulk insert) cost more than the rest of a create
    (bench/RESULTS.md). The objects stay out of the session (what the create answers is built
    from them) and get the values the database stored."""
    connection = session.connection()
    values = _column_values(prescription)
    prescription.id = connection.execute(_INSERT_PRESCRIPTION, values).scalar_one()
    for line in prescription.lines:
        line.prescription_id = prescription.id
    connection.execute(_INSERT_LINE, [_column_values(line) for line in prescription.lines])


_INSERT_PRESCRIPTION = insert(Prescription.__table__).returning(Prescription.__table__.c.id)
_INSERT_LINE = insert(Line.__table__)


def _column_values(instance: Prescription | Line) -> dict[str, Any]:
    """Every column of a new row but its id, the model's defaults applied."""
    values = {}
    for column in instance.__table__.columns:
        if column.primary_key:
            continue
        if column.key not in instance.__dict__ and column.default is not None:
            default = column.default
            value = default.arg if default.is_scalar else default.arg(None)
            instance.__dict__[column.key] = value  # a snapshot: no attribute events
        if column.key in instance.__dict__:
            values[column.key] = instance.__dict__[column.key]
    return values


def _hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, actor: Actor, key: str, request_hash: str) -> Created | None:
    stored = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.client_id == actor.client_pk, IdempotencyRecord.key == key
        )
    )
    if stored is None:
        return None
    session.rollback()
    if stored.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return Created(json.loads(stored.response_body), replayed=True)


def _validate(data: dict[str, Any], catalogue: catalogues.Catalogue) -> None:
    errors: dict[str, str] = {}
    patient = data["patient"]
    if patient.get("ins") is not None and not is_ins(patient["ins"]):
        errors["patient.ins"] = "must be an INS of 15 characters with a valid key (97 - NIR mod 97)"
    if patient["birth_date"] > latest_today():
        errors["patient.birth_date"] = "must not be in the future"
    lines = data["lines"]
    if not 1 <= len(lines) <= MAX_LINES:
        errors["lines"] = f"a prescription has 1 to {MAX_LINES} lines"
    for index, line in enumerate(lines[:MAX_LINES]):
        errors.update(check_line(line, f"lines[{index}]", catalogue))
    errors.update(_check_result_return(data.get("result_return")))
    if errors:
        raise ValidationFailed(errors)


def _check_result_return(result_return: dict[str, Any] | None) -> dict[str, str]:
    if not result_return:
        return {}
    errors = {}
    channels, phone = result_return.get("channels") or [], result_return.get("phone")
    if len(channels) != len(set(channels)):
        errors["result_return.channels"] = "each channel once"
    if "phone" in channels and not phone:
        errors["result_return.phone"] = "required when results are returned by phone"
    elif phone and not is_phone(phone):
        errors["result_return.phone"] = "must be a phone number (0X XX XX XX XX or +country...)"
    copies = result_return.get("copies_to") or []
    if len(copies) > MAX_COPIES:
        errors["result_return.copies_to"] = f"at most {MAX_COPIES} copies"
    for index, copy in enumerate(copies[:MAX_COPIES]):
        if not is_rpps(copy["rpps"]):
            errors[f"result_return.copies_to[{index}].rpps"] = "must be an RPPS number (11 digits)"
    return errors


def _new_prescription(
    actor: Actor,
    data: dict[str, Any],
    catalogue: catalogues.Catalogue,
    ins_key: bytes,
    validity_days: int,
) -> Prescription:
    now = utcnow()
    patient = data["patient"]
    prescription = snapshot(
        Prescription,
        {
            "code": codes.generate_code(),
            "status": ACTIVE,
            "version": 1,
            "modified": False,
            "prescriber_id": actor.client_pk,
            "prescriber_rpps": actor.identifier,
            "prescriber_name": actor.name,
            "patient_sex": patient["sex"],
            "patient_birth_date": patient["birth_date"],
            "ins_pseudonym": (
                ins_pseudonym(patient["ins"], key=ins_key) if patient.get("ins") else None
            ),
            "clinical_context": data.get("clinical_context"),
            "result_return": data.get("result_return"),
            "catalogue_version_id": catalogue.version_id,
            "sharing_withheld": False,
            "created_at": now,
            "updated_at": now,
            "expires_at": now + timedelta(days=validity_days),
        },
    )
    # Snapshots rather than constructed objects: they are stored by Core statements (_store)
    # and only read afterwards; the constructors' attribute events were 4 % of a create.
    lines = [
        snapshot(Line, line_values(line, position, catalogue, origin="prescriber"))
        for position, line in enumerate(data["lines"], start=1)
    ]
    set_committed_value(prescription, "lines", lines)
    set_committed_value(prescription, "proposals", [])  # known empty: no query when shown
    return prescription


def line_values(
    line: dict[str, Any],
    position: int,
    catalogue: catalogues.Catalogue,
    *,
    origin: str,
    replaces: str | None = None,
) -> dict[str, Any]:
    """The columns of a new line, from what its prescriber or laboratory sent."""
    entry = catalogue.get(line.get("loinc") or "")
    renewals = line.get("renewals", 0)
    return {
        "line_id": f"L{position}",
        "position": position,
        "loinc": line.get("loinc"),
        "label": entry.label if entry else None,
        "text": line.get("text"),
        "context": context_with_labels(line, catalogue),
        "urgent": line.get("urgent", False),
        "urgent_reason": (line.get("urgent_reason") or "").strip() or None,
        "ald": line.get("ald", False),
        "prevention": line.get("prevention", False),
        "work_accident": line.get("work_accident", False),
        "not_reimbursable": line.get("not_reimbursable", False),
        "off_nomenclature": line.get("off_nomenclature", False),
        "renewals": renewals,
        "renewals_left": renewals,
        "patient_instructions": list(line.get("patient_instructions") or []),
        "sampling_instructions": line.get("sampling_instructions"),
        "comment": line.get("comment"),
        "status": REQUESTED,
        "origin": origin,
        "replaces": replaces,
    }


def _warnings(
    session: Session,
    prescription: Prescription,
    data: dict[str, Any],
    catalogue: catalogues.Catalogue,
) -> list[dict[str, str]]:
    warnings = []
    for line, given in zip(prescription.lines, data["lines"], strict=True):
        for item in missing_context(given, catalogue):
            warnings.append(
                {
                    "code": "missing_clinical_context",
                    "line": line.line_id,
                    "detail": f"{line.label} [{line.loinc}]: the laboratory needs "
                    f"'{item['label']}' ({item['code']}), which is missing.",
                }
            )
    for line_id, loinc in _duplicates(session, prescription):
        warnings.append(
            {
                "code": "possible_duplicate",
                "line": line_id,
                "detail": f"{loinc} is already requested for this patient in another prescription "
                "that is still active or in progress.",
            }
        )
    return warnings


def _duplicates(session: Session, prescription: Prescription) -> list[tuple[str, str]]:
    loincs = {line.loinc: line.line_id for line in prescription.lines if line.loinc}
    if prescription.ins_pseudonym is None or not loincs:
        return []
    found = session.connection().execute(
        _DUPLICATES,
        {
            "pseudonym": prescription.ins_pseudonym,
            "id": prescription.id,
            "now": utcnow(),
            "loincs": list(loincs),
        },
    )
    return sorted((loincs[loinc], loinc) for loinc in found.scalars())


def _duplicates_statement():
    """The patient's few open prescriptions first (a materialised CTE: the planner cannot merge
    it), then their lines: a plan that stays cheap whatever the statistics say, where a join
    could walk the LOINC index over every line of the base. One statement, built once."""
    prescriptions, lines = Prescription.__table__.c, Line.__table__.c
    open_prescriptions = (
        select(prescriptions.id)
        .where(
            prescriptions.ins_pseudonym == bindparam("pseudonym"),
            prescriptions.id != bindparam("id"),
            prescriptions.status.in_(OPEN),
            OPEN_ROWS,  # the same, as ix_prescriptions_open_patient is written
            prescriptions.expires_at > bindparam("now"),
        )
        .cte("open_prescriptions")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(lines.loinc)
        .where(
            lines.prescription_id.in_(select(open_prescriptions.c.id)),
            lines.loinc.in_(bindparam("loincs", expanding=True)),
            lines.status == REQUESTED,
        )
        .distinct()
    )


_DUPLICATES = _duplicates_statement()


# ---- finding and reading --------------------------------------------------------------------


def parse_code(raw: str) -> str:
    """A code as a person typed it, or PrescriptionNotFound: a bad code can match nothing."""
    try:
        return codes.normalise(raw)
    except codes.InvalidCode as error:
        raise PrescriptionNotFound() from error


def find(
    session: Session, code: str, *, lock: bool = False, with_lines: bool = True
) -> Prescription | None:
    query = select(Prescription).where(Prescription.code == code)
    if with_lines:
        query = query.options(selectinload(Prescription.lines))
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def role(prescription: Prescription, actor: Actor) -> str | None:
    """The caller's role in the lifecycle table, relative to this prescription."""
    return lifecycle.role_of(
        actor=actor,
        prescriber_id=prescription.prescriber_id,
        lab_id=prescription.lab_id,
        last_lab_id=prescription.last_lab_id,
    )


def can_see(prescription: Prescription, actor: Actor) -> bool:
    """Its prescriber; the laboratory holding it, or the one that executed it last."""
    return lifecycle.allows(prescription.status, lifecycle.READ, role(prescription, actor))


def find_concerning(
    session: Session, actor: Actor, code: str, *, lock: bool = False
) -> Prescription | None:
    """The prescription with this code if it concerns the caller, in one statement scoped to
    it: another party's code and an unknown one run exactly the same statements (no timing
    difference tells them apart)."""
    query = select(Prescription).where(Prescription.code == code, _concerns(actor))
    query = query.options(selectinload(Prescription.lines))
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def _concerns(actor: Actor):
    if actor.is_prescriber:
        return Prescription.prescriber_id == actor.client_pk
    return or_(Prescription.lab_id == actor.client_pk, Prescription.last_lab_id == actor.client_pk)


def find_visible(
    session: Session, actor: Actor, raw_code: str, *, lock: bool = False
) -> Prescription:
    prescription = find_concerning(session, actor, parse_code(raw_code), lock=lock)
    if prescription is None or not can_see(prescription, actor):
        raise PrescriptionNotFound()
    return prescription


def find_for(session: Session, actor: Actor, raw_code: str, action: str) -> Prescription:
    """The prescription, locked, when the lifecycle table lets this caller do `action` now."""
    prescription = find(session, parse_code(raw_code), lock=True)
    if prescription is None:
        raise PrescriptionNotFound()
    lifecycle.check(prescription.status, action, role(prescription, actor))
    return prescription


def apply_expiry(session: Session, prescription: Prescription, now: datetime | None = None) -> bool:
    """Mark an active prescription past its validity as expired; True when it changed."""
    now = now or utcnow()
    if prescription.expires_at > now:
        return False
    if not lifecycle.allows(prescription.status, lifecycle.EXPIRE, lifecycle.SYSTEM):
        return False
    prescription.status = lifecycle.check(prescription.status, lifecycle.EXPIRE, lifecycle.SYSTEM)
    touch(prescription, now)
    record(
        session, prescription, "expired", None, {"expires_at": prescription.expires_at.isoformat()}
    )
    return True


def touch(prescription: Prescription, now: datetime | None = None) -> None:
    prescription.version += 1
    prescription.updated_at = now or utcnow()


class ReadMemory:
    """What a process keeps between reads: the repeats not yet written to their audit event
    (epu.audit.RepeatedReads), and the views (and encoded FHIR resources) last built, by kind,
    code, version and caller, within `max_bytes`. A version is never changed once written and
    the caller's rights come from the row, so a repeated read of an unchanged prescription costs
    the poll's one row."""

    def __init__(self, repeats: RepeatedReads, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.repeats, self._max_bytes, self._bytes = repeats, max_bytes, 0
        self._views: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = Lock()

    def view(self, key: tuple[str, str, int, int]) -> dict[str, Any] | None:
        encoded = self._get(key)
        return None if encoded is None else orjson.loads(encoded)  # a copy of its own

    def keep(self, key: tuple[str, str, int, int], view: dict[str, Any]) -> None:
        self._put(key, orjson.dumps(view))

    def encoded(self, key: tuple, build: Callable[[], Any]) -> bytes:
        """What `build` returns, encoded, kept under `key`: a key must name the code, the
        version and the caller (and anything else the built value depends on), like a view's."""
        encoded = self._get(key)
        if encoded is None:
            encoded = orjson.dumps(build())
            self._put(key, encoded)
        return encoded

    def _get(self, key: tuple) -> bytes | None:
        with self._lock:
            encoded = self._views.get(key)
            if encoded is not None:
                self._views.move_to_end(key)
        return encoded

    def _put(self, key: tuple, encoded: bytes) -> None:
        if len(encoded) > self._max_bytes // 64:  # a few huge views must not evict the rest
            return
        with self._lock:
            old = self._views.pop(key, None)
            self._bytes += len(encoded) - (len(old) if old else 0)
            self._views[key] = encoded
            while self._bytes > self._max_bytes:
                self._bytes -= len(self._views.popitem(last=False)[1])


def read(
    *, session: Session, actor: Actor, code: str, memory: ReadMemory | None = None
) -> dict[str, Any]:
    """The full prescription; the read is recorded in the audit trail before it is returned
    (a repeat within 10 minutes as a count: epu.audit)."""
    normalised = parse_code(code)
    row = _visible_row(session, actor, normalised)
    body = None
    if row.status == ACTIVE and row.expires_at <= utcnow():
        session.rollback()
        expire_now(session=session, code=normalised)
    elif memory is not None:
        body = memory.view(("full", normalised, row.version, actor.client_pk))
    if body is None:
        prescription = find_visible(session, actor, normalised)
        body = views.full(prescription, actor)
        if memory is not None:
            memory.keep(("full", normalised, prescription.version, actor.client_pk), body)
    session.rollback()
    record_read(
        session=session,
        prescription_id=row.id,
        code=normalised,
        kind="read",
        actor=actor,
        repeats=memory.repeats if memory is not None else None,
    )
    return body


def status(
    *,
    session: Session,
    actor: Actor,
    code: str,
    if_none_match: str | None = None,
    memory: ReadMemory | None = None,
) -> dict[str, Any]:
    """The cheap poll: one row when the client's ETag is still current (or when the status
    of this version was built lately for this caller: `memory`)."""
    normalised = parse_code(code)
    row = _visible_row(session, actor, normalised)
    body = None
    if row.status == ACTIVE and row.expires_at <= utcnow():
        expire_now(session=session, code=normalised)
    elif if_none_match and f'"v{row.version}"' in if_none_match:
        session.rollback()
        raise NotModified(f'"v{row.version}"')
    elif memory is not None:
        body = memory.view(("status", normalised, row.version, actor.client_pk))
    if body is None:
        prescription = find(session, normalised)
        body = views.status(prescription, actor)
        if memory is not None:
            memory.keep(("status", normalised, prescription.version, actor.client_pk), body)
    session.rollback()
    return body


@writes
def expire_now(*, session: Session, code: str) -> None:
    """Record the expiry a read has just noticed."""
    prescription = find(session, code, lock=True, with_lines=False)
    apply_expiry(session, prescription)
    session.commit()


# The poll's one row, as a plain statement compiled once (the ORM's per-call work doubled it).
_POLL_COLUMNS = ("id", "version", "prescriber_id", "lab_id", "last_lab_id", "status", "expires_at")
_POLL_ROW = select(*(Prescription.__table__.c[name] for name in _POLL_COLUMNS)).where(
    Prescription.__table__.c.code == bindparam("code")
)
# A Core select rather than text(...).columns(): SQLAlchemy keeps its result metadata with the
# compiled statement, where a textual one is matched to the cursor's columns on every execution
# (20 of 124 µs per poll, measured in a loop on PostgreSQL).


def _visible_row(session: Session, actor: Actor, code: str):
    """The poll's one row of this prescription, if the caller may read it (404 otherwise),
    outside of a transaction where it can (models.db.read_outside_transaction)."""
    read_outside_transaction(session)
    row = session.connection().execute(_POLL_ROW, {"code": code}).one_or_none()
    if row is None or not _row_visible(row, actor):
        session.rollback()
        raise PrescriptionNotFound()
    return row


def _row_visible(row, actor: Actor) -> bool:
    caller = lifecycle.role_of(
        actor=actor,
        prescriber_id=row.prescriber_id,
        lab_id=row.lab_id,
        last_lab_id=row.last_lab_id,
    )
    return lifecycle.allows(row.status, lifecycle.READ, caller)


def list_own(
    *,
    session: Session,
    actor: Actor,
    status: str | None = None,
    updated_since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The prescriber's own prescriptions as status views, oldest update first, with a cursor."""
    return own_prescriptions(
        session=session,
        actor=actor,
        statuses={status} if status else None,
        updated=[("ge", updated_since)] if updated_since else (),
        limit=limit,
        cursor=cursor,
        view=views.status,
    )


# ---- cancelling -----------------------------------------------------------------------------


@writes
def cancel(*, session: Session, actor: Actor, code: str, reason: str) -> dict[str, Any]:
    """Cancel while no laboratory holds it; cancelling twice is harmless."""
    prescription = find_visible(session, actor, code, lock=True)
    apply_expiry(session, prescription)
    try:
        next_status = lifecycle.check(prescription.status, lifecycle.CANCEL, lifecycle.PRESCRIBER)
    except NotCancellable:
        session.commit()  # keeps a just-recorded expiry
        raise
    if next_status == prescription.status:
        body = views.full(prescription, actor)
        session.commit()
        return body
    prescription.status = next_status
    touch(prescription)
    record(session, prescription, "cancelled", actor, {"reason": reason})
    body = views.full(prescription, actor)
    session.commit()
    return body


# ---- printed documents ----------------------------------------------------------------------


def owned_code(*, session: Session, actor: Actor, code: str) -> str:
    """The normalised code of a prescription of this prescriber (one column read), for its QR."""
    normalised = parse_code(code)
    owner = session.scalar(
        select(Prescription.prescriber_id).where(Prescription.code == normalised)
    )
    session.rollback()
    if owner is None or not actor.is_prescriber or owner != actor.client_pk:
        raise PrescriptionNotFound()
    return normalised


@writes
def for_document(*, session: Session, actor: Actor, code: str) -> dict[str, Any]:
    """The full prescription for its printable ordonnance (owner prescriber only); recorded as
    'printed' in the audit trail, without changing its version."""
    normalised = parse_code(code)
    prescription = (
        find_concerning(session, actor, normalised, lock=True) if actor.is_prescriber else None
    )
    if prescription is None or not can_see(prescription, actor):
        session.rollback()
        raise PrescriptionNotFound()
    apply_expiry(session, prescription)
    record(session, prescription, "printed", actor, {})
    body = views.full(prescription, actor)
    session.commit()
    return body
