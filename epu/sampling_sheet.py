"""The ordonnance's sampling sheet ("fiche de prélèvement"): the lines still requested, grouped
by the specimen type the catalogue says they usually need."""

from typing import Any

from epu import specimen_types
from epu.catalogue import Catalogue
from epu.statuses import REQUESTED

OTHER = "Autres examens (prélèvement à préciser)"


def specimen_groups(prescription: dict[str, Any], catalogue: Catalogue) -> list[dict[str, Any]]:
    """[{"type": "SER" | None, "label": "Sérum", "lines": [line, ...]}, ...]: groups in the order
    of their first line; lines without a known specimen type last."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for line in prescription.get("lines") or []:
        if line.get("status") not in (REQUESTED, None):
            continue
        entry = catalogue.get(line.get("loinc") or "")
        groups.setdefault(entry.specimen if entry else None, []).append(line)
    ordered = [code for code in groups if code is not None] + ([None] if None in groups else [])
    return [
        {
            "type": code,
            "label": specimen_types.label(code) if code else OTHER,
            "lines": groups[code],
        }
        for code in ordered
    ]
