"""Conditional create: If-None-Exist (header or entry.request.ifNoneExist) and identifiers."""

from urllib.parse import parse_qsl

from api.fhir import systems as s
from api.fhir.outcome import invalid


def conditions(body: dict, entries: list[dict], header: str | None) -> list[tuple[str, str]]:
    """If-None-Exist (header or entries) and Bundle.identifier, as (kind, value) pairs."""
    queries = [header] if header else []
    queries += [(e.get("request") or {}).get("ifNoneExist") for e in entries]
    found = [_condition(query) for query in queries if query]
    identifier = body.get("identifier") or {}
    if identifier.get("system") == s.REQUISITION_SYSTEM:
        raise invalid("The requisition code is assigned by EPU.", "Bundle.identifier")
    if identifier.get("system") and identifier.get("value"):
        found.append(("identifier", f"{identifier['system']}|{identifier['value']}"))
    return found


def _condition(query: str) -> tuple[str, str]:
    pairs = parse_qsl(query, keep_blank_values=True)
    name, value = pairs[0] if len(pairs) == 1 else ("", "")
    system, _, code = value.partition("|") if "|" in value else ("", "", value)
    if name == "requisition" and system in ("", s.REQUISITION_SYSTEM) and code:
        return ("requisition", code)
    if name == "identifier" and system == s.REQUISITION_SYSTEM and code:
        return ("requisition", code)
    if name == "identifier" and system and code:
        return ("identifier", f"{system}|{code}")
    raise invalid(
        "If-None-Exist supports one parameter: identifier=system|value (the prescriber "
        f"software's own identifier) or requisition={s.REQUISITION_SYSTEM}|code.",
        "Bundle.entry.request.ifNoneExist",
        code="not-supported",
    )


def single(values: list[str], where: str, what: str) -> str | None:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise invalid(f"Conflicting values: {what}.", where)
    if distinct and len(distinct[0]) > 180:
        raise invalid("An identifier is at most 180 characters long.", where)
    return distinct[0] if distinct else None
