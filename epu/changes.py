"""A laboratory's changes to the lines: checked all together, then applied one by one."""

from typing import Any

from sqlalchemy.orm import Session

from epu import catalogue as catalogues
from epu.actors import Actor
from epu.audit import record
from epu.errors import LineNotRequested, ValidationFailed
from epu.lines import check_line
from epu.prescriptions import line_values
from epu.statuses import REMOVED, REPLACED, REQUESTED
from models import Line, Prescription

REPLACING_OPS = ("remove", "replace")
LINE_FLAGS = (
    "urgent",
    "ald",
    "prevention",
    "work_accident",
    "not_reimbursable",
    "off_nomenclature",
)


def touched_lines(changes: list[dict[str, Any]]) -> set[str]:
    """The existing lines these changes remove or replace."""
    return {change["line_id"] for change in changes if change["op"] in REPLACING_OPS}


def validate_changes(
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


def apply_change(
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
        replaces = change.get("line_id") if change["op"] == "replace" else None
        added = Line(
            **line_values(
                change["line"], position, catalogue, origin="laboratory", replaces=replaces
            )
        )
        prescription.lines.append(added)
        detail["new_line"] = added.line_id
        detail["loinc"] = added.loinc
        detail["text"] = added.text
        detail["flags"] = {name: getattr(added, name) for name in LINE_FLAGS}
        detail["urgent_reason"] = added.urgent_reason
    record(session, prescription, "modified", actor, detail)
