"""_elements: only the elements asked for, plus those FHIR requires, marked SUBSETTED."""

from typing import Any

from api.fhir.systems import SUBSETTED

ALWAYS = ("resourceType", "id", "meta")
MANDATORY = {
    "ServiceRequest": ("status", "intent", "subject", "contained"),
    "Task": ("status", "intent"),
    "AuditEvent": ("type", "recorded", "agent", "source"),
}


def elements(resource: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    keep = set(names) | set(ALWAYS) | set(MANDATORY.get(resource["resourceType"], ()))
    subset = {key: value for key, value in resource.items() if key in keep}
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset
