"""What each party sees of a nurse's samplings: plain JSON-ready dicts."""

from typing import Any

from epu import specimen_types
from models import Prescription, Sampling


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sampling(item: Sampling, *, show_nurse: bool) -> dict[str, Any]:
    """One sampling; without the nurse (nor her comment) when the patient objected to sharing."""
    return {
        "id": item.public_id,
        "status": item.status,
        "collected_at": _iso(item.collected_at),
        "recorded_at": _iso(item.created_at),
        "corrected_at": _iso(item.updated_at) if item.updated_at != item.created_at else None,
        "nurse": {"rpps": item.nurse_rpps, "name": item.nurse_name} if show_nurse else None,
        "specimens": [
            {**specimen, "label": specimen_types.label(specimen["type"])}
            for specimen in item.specimens
        ],
        "not_collected": list(item.not_collected),
        "comment": item.comment if show_nurse else None,
        "destination": {"finess": item.destination_finess} if item.destination_finess else None,
    }


def for_parties(prescription: Prescription, hidden: bool) -> list[dict[str, Any]]:
    """The samplings as the prescriber or a laboratory reads them (no query when there is none)."""
    if prescription.sampled_at is None:
        return []
    return [sampling(item, show_nurse=not hidden) for item in prescription.samplings]


def summary(prescription: Prescription) -> dict[str, str] | None:
    """The latest sampling's outcome, for the status poll (read from the prescription's row)."""
    if prescription.sampling_status is None or prescription.sampled_at is None:
        return None
    return {"status": prescription.sampling_status, "at": _iso(prescription.sampled_at)}
