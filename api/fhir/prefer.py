"""Prefer: return=minimal | representation | OperationOutcome (RFC 7240, FHIR's http page),
on the transaction and the operations, answered with Preference-Applied."""

from typing import Any

from flask import Response

from api.fhir.outcome import Issue, outcome
from api.fhir.wire import preferences, respond

MINIMAL, REPRESENTATION, OUTCOME = "minimal", "representation", "operationoutcome"
APPLIED = {MINIMAL: "minimal", REPRESENTATION: "representation", OUTCOME: "OperationOutcome"}


def wanted() -> str | None:
    """The return asked for (lower case), or None when absent or not one of the three."""
    value = preferences().get("return")
    return value if value in APPLIED else None


def applied() -> dict[str, str]:
    choice = wanted()
    return {"Preference-Applied": f"return={APPLIED[choice]}"} if choice else {}


def answer(resource: dict[str, Any], done: str, **headers: str) -> Response:
    """The operation's result as preferred: the resource (default), nothing, or an outcome."""
    choice = wanted()
    headers.update(applied())
    if choice == MINIMAL:
        response = Response(status=200)
        response.headers.update(headers)
        return response
    if choice == OUTCOME:
        note = Issue(done, "informational", severity="information")
        return respond(outcome([note]), **headers)
    return respond(resource, **headers)
