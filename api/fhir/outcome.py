"""Every OperationOutcome of /fhir is built by `outcome`; every error becomes one."""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from flask import Blueprint, Flask, Response, request
from marshmallow import ValidationError as MarshmallowError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from api.errors import DOMAIN_STATUS, Problem, flatten
from api.fhir.narrative import summary
from api.fhir.systems import CS_ISSUE, FHIR_JSON
from epu.errors import DomainError, ValidationFailed

log = logging.getLogger(__name__)

# FHIR issue-type for each HTTP status the interface answers.
ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "business-rule",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    421: "not-supported",
    422: "business-rule",
    428: "required",
    429: "throttled",
    500: "exception",
    503: "transient",
}
PASSED_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


@dataclass(frozen=True)
class Issue:
    diagnostics: str
    code: str = "invalid"  # FHIR issue-type
    severity: str = "error"
    expression: tuple[str, ...] = ()
    slug: str | None = None  # details: the same slug as the JSON API's problem code


class FhirError(Exception):
    """A refusal decided by the FHIR layer, with its issues."""

    def __init__(self, status: int, issues: list[Issue], headers: dict[str, str] | None = None):
        super().__init__("; ".join(issue.diagnostics for issue in issues))
        self.status, self.issues, self.headers = status, issues, headers or {}


def invalid(diagnostics: str, *expression: str, status: int = 422, code: str = "") -> FhirError:
    """The common case: one issue about one place of the request."""
    issue_code = code or ("structure" if status == 400 else "business-rule")
    return FhirError(status, [Issue(diagnostics, issue_code, expression=tuple(expression))])


def outcome(issues: Iterable[Issue]) -> dict:
    """The one builder of OperationOutcome resources."""
    issues = list(issues)
    return {
        "resourceType": "OperationOutcome",
        "text": summary(" ".join(issue.diagnostics for issue in issues) or "OperationOutcome"),
        "issue": [_issue(issue) for issue in issues],
    }


def _issue(issue: Issue) -> dict:
    item: dict = {"severity": issue.severity, "code": issue.code}
    if issue.slug:
        item["details"] = {"coding": [{"system": CS_ISSUE, "code": issue.slug}]}
    if issue.diagnostics:
        item["diagnostics"] = issue.diagnostics
    if issue.expression:
        item["expression"] = list(issue.expression)
    return item


def outcome_response(
    status: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(outcome(issues))
    response = Response(body, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    response.headers.update(headers or {})
    return response


# ---- error handlers --------------------------------------------------------------------------


def from_fhir_error(error: FhirError) -> Response:
    return outcome_response(error.status, error.issues, error.headers)


def from_problem(error: Problem) -> Response:
    issue = Issue(error.detail, ISSUE_TYPE.get(error.status, "processing"), slug=error.slug)
    return outcome_response(error.status, [issue], error.headers)


def from_domain(error: DomainError) -> Response:
    status = DOMAIN_STATUS.get(type(error), 400)
    if isinstance(error, ValidationFailed):
        issues = [
            Issue(f"{path}: {message}", "invalid", slug=error.slug)
            for path, message in error.errors.items()
        ]
    else:
        issues = [Issue(error.detail, ISSUE_TYPE.get(status, "processing"), slug=error.slug)]
    retry_after = getattr(error, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return outcome_response(status, issues, headers)


def from_marshmallow(error: MarshmallowError) -> Response:
    fields = flatten(error.messages)
    issues = [
        Issue(f"{path}: {message}", "invalid", slug="validation")
        for path, message in fields.items()
    ]
    return outcome_response(422, issues)


def from_http(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        detail = "No such resource or operation on this FHIR server (see /fhir/metadata)."
    elif status == 405:
        detail = f"{request.method} is not supported here; see /fhir/metadata."
    else:
        detail = error.description or error.name
    headers = {k: v for k, v in error.get_headers() if k in PASSED_HEADERS}
    if error.response is not None:
        headers.update({k: v for k, v in error.response.headers.items() if k in PASSED_HEADERS})
    return outcome_response(status, [Issue(detail, ISSUE_TYPE.get(status, "processing"))], headers)


def from_database(error: OperationalError) -> Response:
    log.warning("database unavailable: %s", type(getattr(error, "orig", error)).__name__)
    issue = Issue("The database is busy or unreachable; retry shortly.", "transient")
    return outcome_response(503, [issue], {"Retry-After": "1"})


def from_unexpected(error: Exception) -> Response:
    log.exception("unexpected error under /fhir")
    issue = Issue("An unexpected error occurred; it has been logged.", "exception")
    return outcome_response(500, [issue])


HANDLERS: tuple[tuple[type[Exception], Callable[..., Response]], ...] = (
    (FhirError, from_fhir_error),
    (Problem, from_problem),
    (DomainError, from_domain),
    (MarshmallowError, from_marshmallow),
    (HTTPException, from_http),
    (OperationalError, from_database),
    (PoolTimeout, from_database),
    (Exception, from_unexpected),
)


def register_blueprint_handlers(blueprint: Blueprint) -> None:
    for kind, handler in HANDLERS:
        blueprint.register_error_handler(kind, handler)


def is_fhir_path() -> bool:
    return request.path == "/fhir" or request.path.startswith("/fhir/")


def register_app_handlers(app: Flask) -> None:
    """Errors raised outside the blueprint (no route matched: 404, 405) on /fhir paths.

    Wraps the app-level handlers already registered (api.errors), so call it after them:
    /fhir paths get an OperationOutcome, every other path what it got before.
    """
    for kind, ours in ((HTTPException, from_http), (Exception, from_unexpected)):
        previous = app.error_handler_spec[None][None].get(kind)
        app.register_error_handler(kind, _by_path(ours, previous))


def _by_path(ours: Callable, previous: Callable | None) -> Callable:
    def handle(error):
        if is_fhir_path():
            return ours(error)
        if previous is not None:
            return previous(error)
        if isinstance(error, HTTPException):
            return error
        raise error

    return handle
