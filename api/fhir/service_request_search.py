"""Searching ServiceRequests: by requisition or id (a read, as the JSON API's), or a
prescriber's own lines with every filter in the database; one entry per line, `_count`
entries a page, `next` going on in the middle of a prescription when needed."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from api.auth import current_actor
from api.context import ins_key, read_memory
from api.extensions import db_session
from api.fhir import outbound, pages, params
from api.fhir import systems as s
from api.fhir.outcome import FhirError, Issue
from api.limits import limits
from epu import line_search, lookups, prescriptions, views
from epu.errors import PrescriptionNotFound, ValidationFailed
from epu.identifiers import ins_pseudonym, is_ins
from epu.line_search import WITHDRAWN, WITHHELD, LineFilter, holds
from epu.statuses import DONE, NOT_DONE, REMOVED, REPLACED, REQUESTED

# The request statuses as line states (epu.line_search), as outbound.service_request_status.
STATES = {
    "active": {REQUESTED},
    "completed": {DONE},
    "revoked": {NOT_DONE, REMOVED, REPLACED, WITHDRAWN},
    "unknown": {WITHHELD},
}
MAX_READS = 20  # prescriptions named by requisition and _id in one search
INS_SYSTEMS = {s.INS_NIR, s.INS_NIR_TEST, s.INS_NIR_DEMO}
NIA_REFUSED = "An NIA (temporary identifier) is not a qualified INS: EPU needs the INS-NIR."


@dataclass
class Criteria:
    statuses: set[str] | None
    loincs: set[str] | None
    updated: list
    requester: str | None
    codes: dict[str, set[str] | None] | None  # code -> line ids (None: every line)
    pseudonym: str | None


def search(query: params.Search) -> dict[str, Any]:
    actor = current_actor()
    result = params.result(query)
    state = pages.cursor_state(query)
    criteria = Criteria(
        statuses=params.request_statuses(query),
        loincs=params.tokens(query, "code", s.LOINC),
        updated=params.dates(query, "_lastUpdated"),
        requester=_requester(query),
        codes=_codes(query),
        pseudonym=_pseudonym(query.patient_identifiers) or (state or {}).get("patient"),
    )
    if not actor.is_prescriber and (query.patient_identifiers or (state or {}).get("lookup")):
        return _by_lookup(query, state)
    if actor.is_nurse:
        raise FhirError(
            403, [Issue("Nurses search ServiceRequests by patient (POST _search).", "forbidden")]
        )
    if criteria.codes is not None:
        return _by_reading(query, result, criteria, state)
    if actor.is_lab:
        raise FhirError(
            403,
            [Issue("Laboratories search ServiceRequests by requisition or _id.", "forbidden")],
        )
    return _own_lines(query, result, criteria, state)


def _requester(query: params.Search) -> str | None:
    by_identifier = query.values("requester:identifier")
    plain = query.values("requester")
    if by_identifier and plain:
        raise params.bad("Give requester or requester:identifier, not both.", "requester")
    if len(by_identifier) + len(plain) > 1:
        raise params.bad("requester takes one prescriber.", "requester")
    if by_identifier:
        return params.token(by_identifier[0], s.RPPS) or "-"  # another system: matches nothing
    if plain:
        return plain[0].removeprefix("Practitioner/")
    return None


def _codes(query: params.Search) -> dict[str, set[str] | None] | None:
    """The prescriptions (and lines) named by requisition and _id; ANDed when both given."""
    named: dict[str, set[str] | None] | None = None
    if query.has("requisition"):
        accepted: set[str] | None = None
        for group in query.and_values("requisition"):
            codes = {code for value in group if (code := _requisition(value)) is not None}
            accepted = codes if accepted is None else accepted & codes
        named = {code: None for code in _normalised(accepted or set())}
    if query.has("_id"):
        by_id: dict[str, set[str] | None] = {}
        for group in query.and_values("_id"):
            ids: dict[str, set[str]] = {}
            for value in group:
                code, _, line = value.rpartition("-")
                for normal in _normalised({code}):
                    ids.setdefault(normal, set()).add(line)
            by_id = ids if not by_id else _intersect(by_id, ids)
        named = by_id if named is None else {c: v for c, v in by_id.items() if c in named}
    if named is not None and len(named) > MAX_READS:
        raise params.bad(f"At most {MAX_READS} prescriptions per search.", "requisition")
    return named


def _requisition(value: str) -> str | None:
    """An EPU code, or the code of the caller's prescription under its own order identifier
    (system|value of the prescriber software)."""
    system, bar, _ = value.partition("|")
    if not bar or system in ("", s.REQUISITION_SYSTEM):
        return params.token(value, s.REQUISITION_SYSTEM)
    return prescriptions.code_of_order(
        session=db_session(), actor=current_actor(), identifier=value
    )


def _intersect(left: dict, right: dict) -> dict:
    return {code: left[code] & right[code] for code in left if code in right}


def _normalised(codes: set[str]) -> list[str]:
    found = []
    for code in codes:
        try:
            found.append(prescriptions.parse_code(code))
        except PrescriptionNotFound:
            continue
    return found


def _pseudonym(identifiers: list[str]) -> str | None:
    """The pseudonym of the one INS given (system|value) to POST _search."""
    if not identifiers:
        return None
    values = set()
    for identifier in identifiers:
        system, _, value = identifier.rpartition("|")
        if system == s.INS_NIA:
            raise params.bad(NIA_REFUSED, "patient.identifier", "not-supported")
        if system not in INS_SYSTEMS or not is_ins(value):
            raise params.bad(
                f"patient.identifier is an INS: {s.INS_NIR}|<15 characters with a valid key>.",
                "patient.identifier",
            )
        values.add(ins_pseudonym(value, key=ins_key()))
    if len(values) > 1:
        raise params.bad("Search one patient at a time.", "patient.identifier")
    return values.pop()


# ---- laboratories and nurses: the patient lookup --------------------------------------------


def _by_lookup(query: params.Search, state: dict | None) -> dict[str, Any]:
    """The patient lookup's rules, audit and limits (epu.lookups): the patient's open
    prescriptions the caller may serve, by INS, birth date and how the patient is present.
    Each page is a lookup; its cursor carries them encrypted, never in clear."""
    actor = current_actor()
    given = (state or {}).get("lookup") or _lookup_parameters(query)
    limits().count_lookup(actor)
    try:
        found = lookups.lookup(
            session=db_session(),
            actor=actor,
            ins=given["ins"],
            birth_date=date.fromisoformat(given["birth_date"]),
            presence=given["presence"],
            ins_key=ins_key(),
            view=views.full,
        )["items"]
    except ValidationFailed as error:
        raise FhirError(
            400, [Issue(f"{path}: {message}", "invalid") for path, message in error.errors.items()]
        ) from error
    resources = [
        outbound.service_request(view, line)
        for view in found
        for line in view["lines"]
        if line["status"] == REQUESTED
    ]
    return pages.listed(query, resources, state, lookup=given)


def _lookup_parameters(query: params.Search) -> dict[str, str]:
    identifiers = query.patient_identifiers
    birth = query.lookup.get("patient.birthdate", [])
    presence = query.lookup.get("presence", [])
    if len(identifiers) != 1 or len(birth) != 1 or len(presence) != 1:
        raise params.bad(
            "A patient lookup takes one patient.identifier (INS), one patient.birthdate "
            f"(YYYY-MM-DD) and one presence ({', '.join(lookups.PRESENCE_KINDS)}).",
            "patient.identifier",
        )
    system, _, ins = identifiers[0].rpartition("|")
    if system == s.INS_NIA:
        raise params.bad(NIA_REFUSED, "patient.identifier", "not-supported")
    if system not in INS_SYSTEMS:
        raise params.bad(f"patient.identifier is {s.INS_NIR}|<INS>.", "patient.identifier")
    try:
        date.fromisoformat(birth[0])
    except ValueError as error:
        raise params.bad("patient.birthdate is a date YYYY-MM-DD.", "patient.birthdate") from error
    return {"ins": ins, "birth_date": birth[0], "presence": presence[0]}


# ---- by reading ------------------------------------------------------------------------------


def _by_reading(
    query: params.Search, result: params.Result, criteria: Criteria, state: dict | None
) -> dict[str, Any]:
    actor = current_actor()
    codes = criteria.codes or {}
    if criteria.pseudonym is not None:
        mine = line_search.codes_for_patient(
            session=db_session(), actor=actor, codes=codes, ins_pseudonym=criteria.pseudonym
        )
        codes = {code: lines for code, lines in codes.items() if code in mine}
    resources = []
    for code, lines in sorted(codes.items()):
        try:
            view = prescriptions.read(
                session=db_session(), actor=actor, code=code, memory=read_memory()
            )
        except PrescriptionNotFound:
            continue
        if criteria.requester not in (None, view["prescriber"]["rpps"]):
            continue
        if not holds(_moment(view["updated_at"]), criteria.updated):
            continue
        for line in view["lines"]:
            if lines is not None and line["id"] not in lines:
                continue
            if criteria.loincs is not None and line["loinc"] not in criteria.loincs:
                continue
            status = outbound.service_request_status(view, line)
            if criteria.statuses is None or status in criteria.statuses:
                resources.append(
                    outbound.kept_service_request(read_memory(), view, line, actor.client_pk)
                )
    return pages.listed(query, resources, state, patient=criteria.pseudonym)


# ---- the prescriber's own lines --------------------------------------------------------------


def _own_lines(
    query: params.Search, result: params.Result, criteria: Criteria, state: dict | None
) -> dict[str, Any]:
    actor = current_actor()
    if criteria.requester not in (None, actor.identifier):
        return pages.bundle(query, [], None, 0)
    where = LineFilter(
        loincs=criteria.loincs,
        states=None
        if criteria.statuses is None
        else {state for status in criteria.statuses for state in STATES.get(status, ())},
        updated=criteria.updated,
        ins_pseudonym=criteria.pseudonym,
    )
    total = None
    if result.total:
        total = line_search.count_own_lines(session=db_session(), actor=actor, where=where)
    if result.count_only:
        return pages.bundle(query, [], None, total)
    after = None
    if state and state.get("after"):
        moment, pk, position = state["after"]
        after = (_moment(moment), int(pk), int(position))
    page = line_search.own_lines(
        session=db_session(),
        actor=actor,
        where=where,
        limit=result.count,
        after=after,
        memory=read_memory(),
    )
    items = page["items"]
    memory = read_memory()
    resources = (
        outbound.kept_service_request(memory, view, line, actor.client_pk)
        for view, line, _ in items
    )

    def go_on(shown: int) -> dict[str, Any] | None:
        if shown == len(items) and page["next"] is None:
            return None
        moment, pk, position = items[shown - 1][2]
        return pages.state_for(after=[moment.isoformat(), pk, position], patient=criteria.pseudonym)

    if state is None and total is None and page["next"] is None:
        total = len(items)
    return pages.bundle(query, resources, go_on if items else None, total)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
