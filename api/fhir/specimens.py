"""Specimens of a nurse's samplings as FHIR: plain dicts, as api.fhir.outbound builds them."""

from typing import Any

from api.fhir import systems as s
from epu import specimen_types

EXT_CONTAINERS = f"{s.STRUCTURE}/specimen-container-count"  # valueUnsignedInt: tubes
CS_SAMPLING = f"{s.CODE_SYSTEM}/sampling-status"
SAMPLING_CODES = {
    "collected": ("specimen-collected", "Prélèvement effectué"),
    "partially_collected": ("specimen-partially-collected", "Prélèvement partiel"),
}


def specimen_id(sampling_id: str, index: int) -> str:
    return f"{sampling_id}-{index}"


def specimen_references(view: dict[str, Any], line_id: str) -> list[dict[str, str]]:
    """ServiceRequest.specimen: the specimens collected for this line."""
    return [
        {"reference": f"Specimen/{specimen_id(item['id'], index)}"}
        for item in view.get("samplings") or []
        for index, specimen in enumerate(item["specimens"], 1)
        if line_id in specimen["lines"]
    ]


def sampling_coding(view: dict[str, Any]) -> list[dict[str, str]]:
    """Task.businessStatus: the latest sampling's outcome, beside the prescription's status."""
    summary = view.get("sampling")
    if summary is None and view.get("samplings"):
        summary = {"status": view["samplings"][-1]["status"]}
    if summary is None:
        return []
    code, display = SAMPLING_CODES[summary["status"]]
    return [{"system": CS_SAMPLING, "code": code, "display": display}]


def specimen(code: str, sampling: dict[str, Any], index: int) -> dict[str, Any]:
    item = sampling["specimens"][index - 1]
    collection: dict[str, Any] = {"collectedDateTime": sampling["collected_at"]}
    if sampling["nurse"]:
        collection["collector"] = {
            "type": "Practitioner",
            "identifier": {"system": s.RPPS, "value": sampling["nurse"]["rpps"]},
            "display": sampling["nurse"]["name"],
        }
    resource: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": specimen_id(sampling["id"], index),
        "meta": {"lastUpdated": sampling["corrected_at"] or sampling["recorded_at"]},
        "extension": [{"url": EXT_CONTAINERS, "valueUnsignedInt": item["count"]}],
        "status": "available",
        "type": {
            "coding": [
                {
                    "system": specimen_types.FHIR_SYSTEM,
                    "code": item["type"],
                    "display": item["label"],
                }
            ]
        },
        "request": [{"reference": f"ServiceRequest/{code}-{line}"} for line in item["lines"]],
        "collection": collection,
    }
    if sampling["comment"]:
        resource["note"] = [{"text": sampling["comment"]}]
    return resource
