"""What each party sees of a prescription: plain JSON-ready dicts."""

from typing import Any

from epu.actors import Actor
from epu.instructions import PATIENT_INSTRUCTIONS
from models import Line, Prescription, Proposal


def etag(prescription: Prescription) -> str:
    return f'"v{prescription.version}"'


def execution_hidden(prescription: Prescription, actor: Actor) -> bool:
    """The patient may object to the prescriber seeing how the laboratory carried it out."""
    return prescription.sharing_withheld and actor.is_prescriber


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _line(line: Line, hidden: bool) -> dict[str, Any]:
    return {
        "id": line.line_id,
        "loinc": line.loinc,
        "label": line.label,
        "text": line.text,
        "context": line.context,
        "urgent": line.urgent,
        "urgent_reason": line.urgent_reason,
        "ald": line.ald,
        "prevention": line.prevention,
        "work_accident": line.work_accident,
        "not_reimbursable": line.not_reimbursable,
        "off_nomenclature": line.off_nomenclature,
        "renewals": line.renewals,
        "renewals_left": None if hidden else line.renewals_left,
        "patient_instructions": [
            {"code": code, "label": PATIENT_INSTRUCTIONS.get(code)}
            for code in line.patient_instructions
        ],
        "sampling_instructions": line.sampling_instructions,
        "comment": line.comment,
        "status": None if hidden else line.status,
        "origin": line.origin,
        "replaces": line.replaces,
        "reason": None if hidden else line.outcome_reason,
    }


def _visible_lines(prescription: Prescription, hidden: bool) -> list[Line]:
    if hidden:
        return [line for line in prescription.lines if line.origin == "prescriber"]
    return list(prescription.lines)


def _laboratory(prescription: Prescription, hidden: bool) -> dict[str, str] | None:
    if hidden or prescription.lab_finess is None:
        return None
    return {"finess": prescription.lab_finess, "name": prescription.lab_name}


def full(prescription: Prescription, actor: Actor, **extra: Any) -> dict[str, Any]:
    hidden = execution_hidden(prescription, actor)
    view = {
        "code": prescription.code,
        "status": prescription.status,
        "version": prescription.version,
        "modified": None if hidden else prescription.modified,
        "execution_withheld": hidden,
        "created_at": _iso(prescription.created_at),
        "updated_at": _iso(prescription.updated_at),
        "expires_at": _iso(prescription.expires_at),
        "prescriber": {"rpps": prescription.prescriber_rpps, "name": prescription.prescriber_name},
        "patient": {
            "sex": prescription.patient_sex,
            "birth_date": prescription.patient_birth_date.isoformat(),
            "ins_verified": prescription.ins_pseudonym is not None,
        },
        "laboratory": _laboratory(prescription, hidden),
        "clinical_context": prescription.clinical_context,
        "result_return": prescription.result_return,
        "lines": [_line(line, hidden) for line in _visible_lines(prescription, hidden)],
        # The patient's objection hides the execution, not what awaits the prescriber's answer.
        "proposals": [proposal(item, hide_laboratory=hidden) for item in prescription.proposals],
    }
    for key, value in extra.items():
        if key == "ins_match":
            view["patient"]["ins_match"] = value
        else:
            view[key] = value
    return view


def status(prescription: Prescription, actor: Actor) -> dict[str, Any]:
    hidden = execution_hidden(prescription, actor)
    return {
        "code": prescription.code,
        "status": prescription.status,
        "version": prescription.version,
        "modified": None if hidden else prescription.modified,
        "execution_withheld": hidden,
        "updated_at": _iso(prescription.updated_at),
        "laboratory": _laboratory(prescription, hidden),
        "lines": [
            {
                "id": line.line_id,
                "loinc": line.loinc,
                "text": line.text,
                "status": None if hidden else line.status,
            }
            for line in _visible_lines(prescription, hidden)
        ],
        "proposals": proposals_summary(prescription),
    }


def proposal(item: Proposal, *, hide_laboratory: bool = False) -> dict[str, Any]:
    return {
        "id": item.proposal_id,
        "status": item.status,
        "mode": item.mode,
        "changes": item.changes,
        "reason": item.reason,
        "comment": item.comment,
        "created_at": _iso(item.created_at),
        "answered_at": _iso(item.answered_at) if item.answered_at else None,
        "laboratory": None
        if hide_laboratory
        else {"finess": item.lab_finess, "name": item.lab_name},
    }


def proposals_summary(prescription: Prescription) -> dict[str, Any]:
    """Enough for a poller to know that something waits for an answer."""
    items = prescription.proposals
    last = items[-1] if items else None
    return {
        "pending": sum(1 for item in items if item.status == "pending"),
        "last": {"id": last.proposal_id, "status": last.status, "mode": last.mode}
        if last
        else None,
    }
