"""Search parameters: which are known, how their values read, and the paging links.

Strict by default: a parameter, modifier or prefix EPU does not apply answers 400 naming it,
because a filter silently dropped widens the search (another patient's exams on screen).
`Prefer: handling=lenient` ignores them instead (and leaves them out of the `self` link).
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import request
from werkzeug.datastructures import MultiDict

from api.fhir.outcome import FhirError, Issue
from api.fhir.wire import absolute, preferences
from epu.identifiers import is_ins
from epu.line_search import Span
from epu.search import in_searchable_range

PARIS = ZoneInfo("Europe/Paris")
TOKEN, DATE, REFERENCE, SPECIAL = "token", "date", "reference", "special"


@dataclass(frozen=True)
class Parameter:
    kind: str
    modifiers: tuple[str, ...] = ()


SEARCH_PARAMETERS: dict[str, dict[str, Parameter]] = {
    "ServiceRequest": {
        "_id": Parameter(TOKEN),
        "requisition": Parameter(TOKEN),
        "requester": Parameter(REFERENCE, ("identifier",)),
        "status": Parameter(TOKEN),
        "code": Parameter(TOKEN),
        "_lastUpdated": Parameter(DATE),
    },
    "Task": {
        "group-identifier": Parameter(TOKEN),
        "_id": Parameter(TOKEN),
        "focus": Parameter(REFERENCE),
    },
    "AuditEvent": {"entity": Parameter(REFERENCE)},
}
# Parameters of the result, known on every type.
RESULT_PARAMETERS = ("_count", "_cursor", "_total", "_summary", "_elements", "_totalMethod")
ALWAYS_ALLOWED = ("_format",)
# A patient's identifier is an INS: never in a URL, only in the body of POST .../_search.
PATIENT_IDENTIFIER = ("patient.identifier", "subject.identifier", "patient:identifier")
PATIENT_IDENTIFIER += ("subject:identifier",)
INS_SYSTEMS = ("urn:oid:1.2.250.1.213.1.4.",)
LOOKUP_PARAMETERS = ("patient.birthdate", "presence")  # with an INS, in a POST body only
TOTALS = ("none", "estimate", "accurate")
SUMMARIES = ("false", "count")
REQUEST_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
DEFAULT_COUNT, MAX_COUNT = 50, 200
MAX_VALUES = 100  # OR values of one parameter
_DATE = re.compile(
    r"^(?P<prefix>[a-z]{2})?(?P<date>\d{4}(?:-\d{2}(?:-\d{2})?)?)"
    r"(?P<time>T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?P<zone>Z|[+-]\d{2}:\d{2})?$"
)


@dataclass
class Search:
    """The parameters of one search, as given (names with their modifier) and as applied."""

    resource: str
    args: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    patient_identifiers: list[str] = field(default_factory=list)  # INS tokens (POST only)
    lookup: dict[str, list[str]] = field(default_factory=dict)  # birth date, presence (POST)

    def values(self, name: str) -> list[str]:
        """Every OR value of a parameter, over its repetitions (kept apart by and_values)."""
        return [value for group in self.and_values(name) for value in group]

    def and_values(self, name: str) -> list[list[str]]:
        return [split_or(value) for value in self.args.get(name, [])]

    def one(self, name: str) -> str | None:
        values = self.args.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise bad(f"{name} takes one value.", name)
        return values[0]

    def has(self, name: str) -> bool:
        return name in self.args


def bad(detail: str, parameter: str, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(detail, code, expression=(parameter,))])


def split_or(value: str) -> list[str]:
    """Comma-separated OR values; a comma escaped as \\, belongs to the value."""
    parts = [part.replace("\\,", ",") for part in re.split(r"(?<!\\),", value)]
    if len(parts) > MAX_VALUES:
        raise bad(f"At most {MAX_VALUES} values separated by commas.", value[:40])
    return parts


def search_args(resource: str, form: MultiDict | None = None) -> Search:
    """The parameters of this search (the query string, plus the form of POST _search)."""
    given = MultiDict(request.args)
    if form is not None:
        for name, value in form.items(multi=True):
            given.add(name, value)
    _no_ins_in_url(resource)
    lenient = preferences().get("handling") == "lenient"
    known = SEARCH_PARAMETERS[resource]
    search, issues = Search(resource), []
    for name in given:
        values = given.getlist(name)
        if name in ALWAYS_ALLOWED:
            continue
        if name in RESULT_PARAMETERS:
            search.args[name] = values
            continue
        if name in PATIENT_IDENTIFIER and form is not None and name in form:
            search.patient_identifiers += [v for value in values for v in split_or(value)]
            continue
        if name in LOOKUP_PARAMETERS and form is not None and name in form:
            search.lookup[name] = values  # personal data: never in a link
            continue
        base, _, modifier = name.partition(":")
        parameter = known.get(base)
        problem = None
        if parameter is None:
            problem = f"Unknown search parameter {name!r} for {resource}."
        elif modifier and modifier not in parameter.modifiers:
            problem = f"The modifier :{modifier} of {base!r} is not supported."
        elif parameter.kind == DATE:
            prefixes = {_prefix(v) for value in values for v in split_or(value)}
            unsupported = sorted(prefixes - {None, *DATE_PREFIXES})
            if unsupported:
                problem = f"{name}: the prefix {unsupported[0]!r} is not supported."
        if problem is None:
            search.args[name] = values
        elif lenient:
            search.ignored.append(name)
        else:
            issues.append(Issue(problem, "not-supported", expression=(name,)))
    if issues:
        raise FhirError(400, issues)
    return search


def _prefix(value: str) -> str | None:
    match = _DATE.match(value)
    return match["prefix"] if match else None


def _no_ins_in_url(resource: str) -> None:
    for name, value in request.args.items(multi=True):
        if name in PATIENT_IDENTIFIER or _looks_like_ins(value):
            raise bad(
                "An INS never goes in a URL (it would be logged by every proxy): search with "
                f"POST /fhir/{resource}/_search and the parameters as "
                "application/x-www-form-urlencoded in the body.",
                name,
                "security",
            )


def _looks_like_ins(value: str) -> bool:
    if any(system in value for system in INS_SYSTEMS):
        return True
    return any(is_ins(part.rpartition("|")[2]) for part in split_or(value[:2000]))


def token(value: str, system: str) -> str | None:
    """The code of a token in this system ("code", "system|code" or "|code"); None: no match."""
    if "|" not in value:
        return value
    given, _, code = value.partition("|")
    return code if given in ("", system) else None


def tokens(search: Search, name: str, system: str) -> set[str] | None:
    """The codes a token parameter accepts (ANDed repetitions intersect); None: not given."""
    if not search.has(name):
        return None
    accepted: set[str] | None = None
    for group in search.and_values(name):
        codes = {code for value in group if (code := token(value, system)) is not None}
        accepted = codes if accepted is None else accepted & codes
    return accepted or set()


def request_statuses(search: Search) -> set[str] | None:
    if not search.has("status"):
        return None
    accepted: set[str] | None = None
    for group in search.and_values("status"):
        for status in group:
            if status not in REQUEST_STATUSES:
                raise bad(
                    f"{status!r} is not a request status ({', '.join(REQUEST_STATUSES)}).",
                    "status",
                )
        accepted = set(group) if accepted is None else accepted & set(group)
    return accepted or set()


# ---- dates -----------------------------------------------------------------------------------


def dates(search: Search, name: str) -> list[list[Span]]:
    """Each repetition ANDed; its comma-separated values ORed; each value a time range."""
    return [[_date_value(value, name) for value in group] for group in search.and_values(name)]


def _date_value(value: str, name: str) -> Span:
    match = _DATE.match(value)
    if not match:
        raise bad(
            f"{name}: {value!r} is not [prefix]YYYY[-MM[-DD[Thh:mm[:ss]]]][zone] "
            f"(prefixes {', '.join(DATE_PREFIXES)}).",
            name,
        )
    prefix = match["prefix"] or "eq"
    if prefix not in DATE_PREFIXES:
        raise bad(f"{name}: the prefix {prefix!r} is not supported.", name, "not-supported")
    start, end = _date_range(match, value, name)
    return {
        "eq": Span(start, end),
        "ne": Span(start, end, inside=False),
        "gt": Span(end, None),
        "sa": Span(end, None),
        "ge": Span(start, None),
        "lt": Span(None, start),
        "eb": Span(None, start),
        "le": Span(None, end),
    }[prefix]


def _date_range(match: re.Match, value: str, name: str) -> tuple[datetime, datetime]:
    """[start, end) of the value's precision; without a zone, the time is Europe/Paris."""
    day = match["date"]
    zone = match["zone"]
    try:
        if not match["time"]:
            if zone:
                raise ValueError("a date alone has no time zone")
            parts = [int(part) for part in day.split("-")]
            start = datetime(parts[0], *(parts[1:] + [1, 1])[:2], tzinfo=PARIS)
            if not in_searchable_range(start):
                raise bad(f"{name}: {value!r} is out of range (years 1900 to 9000).", name)
            end = _next(start, len(parts))
            return start.astimezone(UTC), end.astimezone(UTC)
        text = day + match["time"] + (zone or "").replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise bad(f"{name}: {value!r} is not a valid date ({error}).", name) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    if not in_searchable_range(moment):
        raise bad(f"{name}: {value!r} is out of range (years 1900 to 9000).", name)
    time = match["time"]
    if "." in time:
        step = timedelta(microseconds=10 ** (6 - len(time.split(".")[1])))
    else:
        step = timedelta(minutes=1) if time.count(":") == 1 else timedelta(seconds=1)
    return moment.astimezone(UTC), (moment + step).astimezone(UTC)


def _next(start: datetime, precision: int) -> datetime:
    if precision == 1:
        return start.replace(year=start.year + 1)
    if precision == 2:
        month = start.month % 12 + 1
        return start.replace(year=start.year + (start.month == 12), month=month)
    return (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=PARIS)


# ---- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    count: int
    total: bool  # Bundle.total wanted
    count_only: bool  # _count=0 or _summary=count
    elements: tuple[str, ...] | None


def result(search: Search) -> Result:
    value = search.one("_count")
    if value is None:
        count = DEFAULT_COUNT
    elif not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise bad("_count is a number (0 for the total only).", "_count")
    else:
        count = min(int(value), MAX_COUNT)  # a server may give fewer: the next link goes on
    total = search.one("_total") or "none"
    if total not in TOTALS:
        raise bad(f"_total is one of {', '.join(TOTALS)}.", "_total")
    summary = search.one("_summary") or "false"
    if summary not in SUMMARIES:
        raise bad(
            f"_summary={summary} is not supported (only {', '.join(SUMMARIES)}); "
            "_elements selects elements.",
            "_summary",
            "not-supported",
        )
    elements = None
    if search.has("_elements"):
        elements = tuple(sorted({e.strip() for e in search.values("_elements") if e.strip()}))
    count_only = count == 0 or summary == "count"
    return Result(count, total != "none" or count_only, count_only, elements)


def link(search: Search, **changes: str | None) -> str:
    """The search's URL with the parameters as applied (no cursor unless given)."""
    args = {name: values for name, values in search.args.items() if name != "_cursor"}
    for name, value in changes.items():
        if value is not None:
            args[name] = [value]
    query = urlencode([(name, value) for name, values in args.items() for value in values])
    return absolute(f"{search.resource}?{query}" if query else search.resource)
