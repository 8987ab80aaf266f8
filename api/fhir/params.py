"""Search parameters: which are known, how their values read, and the paging links."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from flask import request

from api.fhir.outcome import FhirError, Issue
from api.fhir.wire import absolute
from epu.search import in_searchable_range

SEARCH_PARAMETERS = {
    "ServiceRequest": (
        "requisition",
        "requester",
        "requester:identifier",
        "status",
        "_lastUpdated",
        "_count",
        "_cursor",
    ),
    "Task": ("group-identifier",),
    "AuditEvent": ("entity", "_count", "_cursor"),
}
ALWAYS_ALLOWED = ("_format",)
REQUEST_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)
DEFAULT_COUNT, MAX_COUNT = 50, 200
_PREFIXED = re.compile(r"^(eq|gt|ge|lt|le)?(\d{4}-\d{2}-\d{2})(T[0-9:.]+(Z|[+-]\d{2}:\d{2}))?$")


def bad(detail: str, parameter: str) -> FhirError:
    return FhirError(400, [Issue(detail, "invalid", expression=(parameter,))])


def search_args(resource: str) -> dict[str, list[str]]:
    """The known parameters; unknown ones are ignored unless Prefer: handling=strict."""
    known = SEARCH_PARAMETERS[resource]
    unknown = [name for name in request.args if name not in known + ALWAYS_ALLOWED]
    if unknown and "handling=strict" in request.headers.get("Prefer", "").replace(" ", ""):
        raise FhirError(
            400,
            [
                Issue(f"Unknown search parameter {name!r} for {resource}.", "not-supported")
                for name in unknown
            ],
        )
    return {name: request.args.getlist(name) for name in known if name in request.args}


def one(args: dict[str, list[str]], name: str) -> str | None:
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise bad(f"{name} takes one value.", name)
    return values[0]


def token(value: str, system: str) -> str | None:
    """The code of a token in this system ("code", "system|code" or "|code"); None: no match."""
    if "|" not in value:
        return value
    given, _, code = value.partition("|")
    return code if given in ("", system) else None


def request_statuses(args: dict[str, list[str]]) -> set[str] | None:
    values = args.get("status")
    if not values:
        return None
    statuses = {status for value in values for status in value.split(",")}
    for status in statuses:
        if status not in REQUEST_STATUSES:
            raise bad(
                f"{status!r} is not a request status ({', '.join(REQUEST_STATUSES)}).", "status"
            )
    return statuses


def last_updated(args: dict[str, list[str]]) -> list[tuple[str, datetime]]:
    """_lastUpdated values as comparisons (gt, ge, lt, le) of the last update time."""
    comparisons = []
    for value in args.get("_lastUpdated", []):
        match = _PREFIXED.match(value)
        if not match:
            raise bad(
                "_lastUpdated is [eq|gt|ge|lt|le]YYYY-MM-DD or a date-time with a time zone.",
                "_lastUpdated",
            )
        prefix = match[1] or "eq"
        try:
            moment = datetime.fromisoformat(value[len(match[1] or "") :].replace("Z", "+00:00"))
        except ValueError as error:
            raise bad(f"{value!r} is not a valid date.", "_lastUpdated") from error
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        step = _precision(match)
        if not in_searchable_range(moment):
            raise bad(f"_lastUpdated {value!r} is out of range.", "_lastUpdated")
        start, end = moment, moment + step
        comparisons += {
            "eq": [("ge", start), ("lt", end)],
            "gt": [("ge", end)],
            "ge": [("ge", start)],
            "lt": [("lt", start)],
            "le": [("lt", end)],
        }[prefix]
    return comparisons


def _precision(match: re.Match) -> timedelta:
    if not match[3]:
        return timedelta(days=1)
    fraction = re.search(r"\.(\d+)", match[3])
    digits = len(fraction[1]) if fraction else 0
    return timedelta(microseconds=10 ** max(0, 6 - digits)) if digits else timedelta(seconds=1)


def holds(moment: datetime, comparisons: list[tuple[str, datetime]]) -> bool:
    checks = {
        "gt": lambda bound: moment > bound,
        "ge": lambda bound: moment >= bound,
        "lt": lambda bound: moment < bound,
        "le": lambda bound: moment <= bound,
    }
    return all(checks[op](bound) for op, bound in comparisons)


def count(args: dict[str, list[str]]) -> int:
    value = one(args, "_count")
    if value is None:
        return DEFAULT_COUNT
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_COUNT:
        raise bad(f"_count is a number from 1 to {MAX_COUNT}.", "_count")
    return int(value)


def link(resource: str, args: dict[str, list[str]], **changes: str | None) -> str:
    params = {name: values for name, values in args.items() if name != "_cursor"}
    for name, value in changes.items():
        if value is not None:
            params[name] = [value]
    query = urlencode([(name, value) for name, values in params.items() for value in values])
    return absolute(f"{resource}?{query}" if query else resource)
