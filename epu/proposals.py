"""The biologist's changes as article L6211-8 CSP frames them. Each use case commits once.

A change is proposed to the prescriber, who accepts or refuses it; in an emergency, or when the
prescriber cannot be reached, it is applied at once and recorded as an applied proposal so the
prescriber sees what was done without agreement, and why.
"""

import base64
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epu import catalogue as catalogues
from epu import lifecycle, views
from epu.actors import Actor
from epu.audit import record
from epu.changes import apply_change, touched_lines, validate_changes
from epu.errors import (
    ProposalNotFound,
    ProposalPending,
    StaleVersion,
    TooManyProposals,
    ValidationFailed,
)
from epu.prescriptions import find, find_for, parse_code, role, touch
from models import Prescription, Proposal
from models.base import utcnow
from models.db import writes

PROPOSAL = "proposal"
URGENT = "urgent"
PRESCRIBER_UNAVAILABLE = "prescriber_unavailable"
MODES = (PROPOSAL, URGENT, PRESCRIBER_UNAVAILABLE)
APPLIED_EVENTS = {
    URGENT: "applied_urgent",
    PRESCRIBER_UNAVAILABLE: "applied_prescriber_unavailable",
}
MAX_PROPOSALS = 50  # per prescription: bounds what a laboratory's retries can pile up


def pending_of(prescription: Prescription) -> Proposal | None:
    return next((p for p in prescription.proposals if p.status == lifecycle.PENDING), None)


def blocked_lines(prescription: Prescription) -> tuple[Proposal | None, set[str]]:
    """The pending proposal, and the lines it would remove or replace."""
    pending = pending_of(prescription)
    return pending, touched_lines(pending.changes) if pending else set()


# ---- the laboratory changes ------------------------------------------------------------------


@writes
def change(
    *,
    session: Session,
    actor: Actor,
    code: str,
    if_match: set[int] | None,
    changes: list[dict[str, Any]],
    mode: str = PROPOSAL,
    reason: str | None = None,
) -> dict[str, Any]:
    """Propose changes (nothing changes yet), or apply them at once for `urgent` or
    `prescriber_unavailable`; all or nothing. `if_match`: the versions the client read."""
    action = lifecycle.PROPOSE if mode == PROPOSAL else lifecycle.APPLY
    prescription = find_for(session, actor, code, action)
    if if_match is not None and prescription.version not in if_match:
        session.rollback()
        raise StaleVersion()
    if mode == PRESCRIBER_UNAVAILABLE and not (reason or "").strip():
        raise ValidationFailed(
            {"reason": "say why the prescriber could not be reached (e.g. who was called, when)"}
        )
    catalogue = catalogues.current(session)
    validate_changes(prescription, changes, catalogue)
    if len(prescription.proposals) >= MAX_PROPOSALS:
        raise TooManyProposals()
    pending = pending_of(prescription)
    if mode == PROPOSAL:
        if pending is not None:
            raise _pending_refusal(pending, "withdraw it before proposing again")
        proposal = _new_proposal(prescription, actor, mode, changes, reason, lifecycle.PENDING)
        detail = {"proposal": proposal.proposal_id, "changes": _summaries(changes)}
        record(session, prescription, "proposed", actor, detail)
    else:
        supersede = pending is not None and _same_changes(pending.changes, changes)
        overlap = pending is not None and touched_lines(pending.changes) & touched_lines(changes)
        if overlap and not supersede:
            raise _pending_refusal(pending, "its lines cannot change until it is answered")
        for item in changes:
            apply_change(session, prescription, item, catalogue, actor)
        prescription.modified = True
        proposal = _new_proposal(prescription, actor, mode, changes, reason, lifecycle.APPLIED)
        if supersede:
            _close(pending, lifecycle.P_SUPERSEDE)
            detail = {"proposal": pending.proposal_id, "by": proposal.proposal_id}
            record(session, prescription, "proposal_superseded", actor, detail)
        detail = {"proposal": proposal.proposal_id, "reason": reason}
        record(session, prescription, APPLIED_EVENTS[mode], actor, detail)
    touch(prescription)
    body = views.full(prescription, actor)
    session.commit()
    return body


def _new_proposal(
    prescription: Prescription,
    actor: Actor,
    mode: str,
    changes: list[dict[str, Any]],
    reason: str | None,
    status: str,
) -> Proposal:
    proposal = Proposal(
        proposal_id=f"P{len(prescription.proposals) + 1}",
        status=status,
        mode=mode,
        changes=changes,
        reason=reason,
        prescriber_id=prescription.prescriber_id,
        lab_id=actor.client_pk,
        lab_finess=actor.identifier,
        lab_name=actor.name,
        created_at=utcnow(),
    )
    prescription.proposals.append(proposal)
    return proposal


def _same_changes(one: list[dict[str, Any]], other: list[dict[str, Any]]) -> bool:
    def essence(changes):  # what is changed, whatever reasons are given the second time
        return [(c["op"], c.get("line_id"), c.get("line")) for c in changes]

    return essence(one) == essence(other)


def _pending_refusal(pending: Proposal, why: str) -> ProposalPending:
    return ProposalPending(
        f"Proposal {pending.proposal_id} awaits the prescriber's answer: {why}.",
        proposal=pending.proposal_id,
    )


def _summaries(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "op": item["op"],
            "line": item.get("line_id"),
            "loinc": (item.get("line") or {}).get("loinc"),
            "text": (item.get("line") or {}).get("text"),
            "reason": item["reason"],
        }
        for item in changes
    ]


def _close(proposal: Proposal, action: str) -> bool:
    """Move the proposal as the table says; False when it already was there (a repeat)."""
    next_status = lifecycle.check_proposal(proposal.status, action, proposal.proposal_id)
    if next_status == proposal.status:
        return False
    proposal.status = next_status
    proposal.answered_at = utcnow()
    return True


def withdraw_pending(session: Session, prescription: Prescription, actor: Actor, why: str) -> None:
    """When the laboratory releases the prescription or ends its execution."""
    pending = pending_of(prescription)
    if pending is not None and _close(pending, lifecycle.P_WITHDRAW):
        detail = {"proposal": pending.proposal_id, "reason": why}
        record(session, prescription, "proposal_withdrawn", actor, detail)


@writes
def withdraw(*, session: Session, actor: Actor, code: str, proposal_id: str) -> dict[str, Any]:
    """The laboratory takes back its pending proposal (repeating is harmless)."""
    prescription = find_for(session, actor, code, lifecycle.WITHDRAW)
    proposal = _proposal(prescription, proposal_id)
    if _close(proposal, lifecycle.P_WITHDRAW):
        record(session, prescription, "proposal_withdrawn", actor, {"proposal": proposal_id})
        touch(prescription)
    body = views.full(prescription, actor)
    session.commit()
    return body


def _proposal(prescription: Prescription, proposal_id: str) -> Proposal:
    found = next((p for p in prescription.proposals if p.proposal_id == proposal_id), None)
    if found is None:
        raise ProposalNotFound()
    return found


# ---- the prescriber answers ------------------------------------------------------------------


@writes
def accept(
    *, session: Session, actor: Actor, code: str, proposal_id: str, comment: str | None = None
) -> dict[str, Any]:
    """Apply the proposed changes, in this one transaction (accepting twice is harmless)."""
    prescription, proposal = _to_answer(session, actor, code, proposal_id, lifecycle.P_ACCEPT)
    if proposal.status != lifecycle.ACCEPTED:
        catalogue = catalogues.current(session)
        validate_changes(prescription, proposal.changes, catalogue)
        for item in proposal.changes:
            apply_change(session, prescription, item, catalogue, actor)
        prescription.modified = True
        _answer(session, prescription, proposal, actor, lifecycle.P_ACCEPT, comment)
    body = views.full(prescription, actor)
    session.commit()
    return body


@writes
def refuse(
    *, session: Session, actor: Actor, code: str, proposal_id: str, comment: str
) -> dict[str, Any]:
    """Nothing changes: the laboratory carries out the prescription as written."""
    if not (comment or "").strip():
        raise ValidationFailed({"comment": "say why the change is refused"})
    prescription, proposal = _to_answer(session, actor, code, proposal_id, lifecycle.P_REFUSE)
    if proposal.status != lifecycle.REFUSED_BY_PRESCRIBER:
        _answer(session, prescription, proposal, actor, lifecycle.P_REFUSE, comment)
    body = views.full(prescription, actor)
    session.commit()
    return body


def _to_answer(
    session: Session, actor: Actor, code: str, proposal_id: str, action: str
) -> tuple[Prescription, Proposal]:
    prescription = find(session, parse_code(code), lock=True)
    caller = role(prescription, actor) if prescription is not None else None
    if caller != lifecycle.PRESCRIBER:
        raise lifecycle.HIDDEN()
    proposal = _proposal(prescription, proposal_id)
    if lifecycle.proposal_outcome(proposal.status, action) != proposal.status:
        lifecycle.check(prescription.status, lifecycle.ANSWER, caller)
        lifecycle.check_proposal(proposal.status, action, proposal_id)
    return prescription, proposal


def _answer(
    session: Session,
    prescription: Prescription,
    proposal: Proposal,
    actor: Actor,
    action: str,
    comment: str | None,
) -> None:
    _close(proposal, action)
    proposal.comment = comment
    kind = "proposal_accepted" if action == lifecycle.P_ACCEPT else "proposal_refused"
    record(
        session, prescription, kind, actor, {"proposal": proposal.proposal_id, "comment": comment}
    )
    touch(prescription)


# ---- the inbox -------------------------------------------------------------------------------


def inbox(
    *,
    session: Session,
    actor: Actor,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The caller's proposals, newest first: those made to this prescriber, or by this
    laboratory; each with its prescription's code."""
    owner = Proposal.prescriber_id if actor.is_prescriber else Proposal.lab_id
    query = (
        select(Proposal, Prescription.code, Prescription.sharing_withheld)
        .join(Prescription, Prescription.id == Proposal.prescription_id)
        .where(owner == actor.client_pk)
        .order_by(Proposal.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(Proposal.status == status)
    if cursor:
        query = query.where(Proposal.id < _decode_cursor(cursor))
    rows = session.execute(query).all()
    session.rollback()
    page = rows[:limit]
    items = [
        {
            "prescription": code,
            **views.proposal(proposal, hide_laboratory=withheld and actor.is_prescriber),
        }
        for proposal, code, withheld in page
    ]
    next_cursor = _encode_cursor(page[-1][0].id) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def _encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"proposal|{pk}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        kind, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if kind != "proposal":
            raise ValueError(kind)
        return int(pk)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationFailed({"cursor": "not a cursor returned by this endpoint"}) from error
