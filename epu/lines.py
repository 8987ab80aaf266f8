"""Validation of prescription lines, shared by creation and the laboratory's changes."""

from datetime import date
from typing import Any

from epu.catalogue import Catalogue
from epu.identifiers import is_loinc
from epu.instructions import PATIENT_INSTRUCTIONS
from epu.statuses import MAX_RENEWALS

MAX_CONTEXT_ITEMS = 20
MAX_CONTEXT_VALUE = 200
MAX_INSTRUCTIONS = 10

FREE_TEXT_HINT = 'send the exam as a free-text line ({"text": "..."}) instead'


def check_line(line: dict[str, Any], path: str, catalogue: Catalogue) -> dict[str, str]:
    """Field-path -> message for everything wrong with one line."""
    errors: dict[str, str] = {}
    loinc, text = line.get("loinc"), line.get("text")
    if (loinc is None) == (text is None or not str(text).strip()):
        errors[path] = "a line has either 'loinc' or 'text', not both and not neither"
    elif loinc is not None and (not is_loinc(loinc) or catalogue.get(loinc) is None):
        errors[f"{path}.loinc"] = (
            f"{loinc!r} is not in the catalogue 'LOINC circuit de la biologie': {FREE_TEXT_HINT}"
        )
    urgent_reason = (line.get("urgent_reason") or "").strip()
    if line.get("urgent") and not urgent_reason:
        errors[f"{path}.urgent_reason"] = "an urgent exam says why it is urgent"
    elif urgent_reason and not line.get("urgent"):
        errors[f"{path}.urgent_reason"] = "only an urgent exam has an urgent_reason"
    renewals = line.get("renewals", 0)
    if not 0 <= renewals <= MAX_RENEWALS:
        errors[f"{path}.renewals"] = f"must be between 0 and {MAX_RENEWALS}"
    if len(line.get("patient_instructions") or []) > MAX_INSTRUCTIONS:
        errors[f"{path}.patient_instructions"] = f"at most {MAX_INSTRUCTIONS} instructions"
    for index, code in enumerate((line.get("patient_instructions") or [])[:MAX_INSTRUCTIONS]):
        if code not in PATIENT_INSTRUCTIONS:
            errors[f"{path}.patient_instructions[{index}]"] = (
                f"{code!r} is not a patient instruction code (MED-1160 to MED-1165)"
            )
    errors.update(_check_context(line, path, catalogue))
    return errors


def _check_context(line: dict[str, Any], path: str, catalogue: Catalogue) -> dict[str, str]:
    errors: dict[str, str] = {}
    entry = catalogue.get(line.get("loinc") or "")
    expected = {item["code"]: item for item in entry.required_context} if entry else {}
    context = line.get("context") or []
    if len(context) > MAX_CONTEXT_ITEMS:
        errors[f"{path}.context"] = f"at most {MAX_CONTEXT_ITEMS} context items"
    for index, item in enumerate(context[:MAX_CONTEXT_ITEMS]):
        item_path = f"{path}.context[{index}]"
        if isinstance(item["value"], str) and len(item["value"]) > MAX_CONTEXT_VALUE:
            errors[f"{item_path}.value"] = f"at most {MAX_CONTEXT_VALUE} characters"
        if not is_loinc(item["code"]):
            errors[f"{item_path}.code"] = f"{item['code']!r} is not a LOINC code"
        elif expected.get(item["code"], {}).get("type") == "date" and not is_iso_date(
            item["value"]
        ):
            errors[f"{item_path}.value"] = "must be a date YYYY-MM-DD"
    return errors


def is_iso_date(value: Any) -> bool:
    """A calendar date written YYYY-MM-DD."""
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return len(str(value)) == 10


def missing_context(line: dict[str, Any], catalogue: Catalogue) -> list[dict[str, str]]:
    """Clinical information the catalogue asks for and the line lacks."""
    entry = catalogue.get(line.get("loinc") or "")
    if entry is None:
        return []
    given = {item["code"] for item in line.get("context") or []}
    return [item for item in entry.required_context if item["code"] not in given]


def context_with_labels(line: dict[str, Any], catalogue: Catalogue) -> list[dict[str, Any]]:
    entry = catalogue.get(line.get("loinc") or "")
    labels = {item["code"]: item["label"] for item in entry.required_context} if entry else {}
    return [
        {"code": item["code"], "label": labels.get(item["code"]), "value": item["value"]}
        for item in line.get("context") or []
    ]
