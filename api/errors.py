"""The one place where refusals become application/problem+json (RFC 9457) for /api and /oauth."""

import logging
from typing import Any

from flask import Flask, Response, json
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from epu import errors

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://epu.esante.gouv.fr/problems/"

DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.ValidationFailed: 422,
    errors.PrescriptionNotFound: 404,
    errors.InvalidPrescriptionCode: 422,
    errors.HeldByAnotherLaboratory: 409,
    errors.PrescriptionCancelled: 410,
    errors.PrescriptionCompleted: 409,
    errors.PrescriptionExpired: 410,
    errors.PatientMismatch: 422,
    errors.InsChecksPaused: 429,
    errors.NotCancellable: 409,
    errors.NotHeld: 409,
    errors.LineNotRequested: 409,
    errors.StaleVersion: 412,
    errors.IdempotencyKeyReused: 422,
    errors.ExecutionCompleted: 409,
    errors.ProposalNotFound: 404,
    errors.ProposalPending: 409,
    errors.ProposalNotPending: 409,
    errors.TooManyProposals: 409,
    errors.SubscriptionNotFound: 404,
    errors.TooManySubscriptions: 409,
    errors.WebhookUrlRefused: 422,
}

HTTP_SLUGS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation",
    428: "precondition_required",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class Problem(Exception):
    """A refusal decided by the HTTP layer itself (authentication, preconditions, limits)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
        self.slug = slug or HTTP_SLUGS.get(status, "error")
        self.title = title or self.slug.replace("_", " ").capitalize()


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors_by_field: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    members: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "code": slug,
    }
    if errors_by_field:
        body["errors"] = errors_by_field
    body.update(members or {})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    response.headers.update(headers or {})
    return response


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """marshmallow's nested messages -> {"lines[1].loinc": "..."}."""
    if isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            return {prefix or "body": " ".join(messages)}
        flat: dict[str, str] = {}
        for item in messages:
            flat.update(flatten(item, prefix))
        return flat
    if isinstance(messages, dict):
        flat = {}
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten(value, path))
        return flat
    return {prefix or "body": str(messages)}


def _from_domain(error: errors.DomainError) -> Response:
    status = DOMAIN_STATUS.get(type(error), 400)
    fields = error.errors if isinstance(error, errors.ValidationFailed) else None
    return problem_response(
        status,
        error.slug,
        error.title,
        error.detail,
        errors_by_field=fields,
        members=error.members,
        headers={"Retry-After": str(error.retry_after)} if hasattr(error, "retry_after") else None,
    )


def _from_problem(error: Problem) -> Response:
    return problem_response(
        error.status, error.slug, error.title, error.detail, headers=error.headers
    )


def _from_http(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if messages is not None and status == 400:
        return problem_response(
            400, "malformed_json", "Malformed request body", "The body is not valid JSON."
        )
    if messages is not None:
        # webargs puts messages under the request location ("json", "query", "headers").
        fields: dict[str, str] = {}
        for location, location_messages in messages.items():
            flat = flatten(location_messages)
            fields.update(
                flat
                if location in ("json", "form")
                else {f"{location}.{k}": v for k, v in flat.items()}
            )
        detail = "; ".join(f"{path}: {msg}" for path, msg in fields.items())
        return problem_response(
            422, "validation", "The request is not valid", detail, errors_by_field=fields
        )
    headers = dict(data.get("headers", {}))
    headers.update({k: v for k, v in error.get_headers() if k == "Allow"})
    if error.response is not None:
        headers.update({k: v for k, v in error.response.headers.items() if k == "Retry-After"})
    detail = data.get("message") or error.description or ""
    slug = HTTP_SLUGS.get(status, "error")
    return problem_response(status, slug, error.name, detail, headers=headers)


def _from_database(error: OperationalError | PoolTimeout) -> Response:
    log.warning("database unavailable: %s", type(getattr(error, "orig", error)).__name__)
    return problem_response(
        503,
        "unavailable",
        "Service busy",
        "The database is busy or unreachable; retry shortly.",
        headers={"Retry-After": "1"},
    )


def _from_unexpected(error: Exception) -> Response:
    log.exception("unexpected error")
    return problem_response(
        500, "internal_error", "Internal error", "An unexpected error occurred; it has been logged."
    )


def register(app: Flask) -> None:
    app.register_error_handler(errors.DomainError, _from_domain)
    app.register_error_handler(Problem, _from_problem)
    app.register_error_handler(HTTPException, _from_http)
    app.register_error_handler(OperationalError, _from_database)
    app.register_error_handler(PoolTimeout, _from_database)  # every connection is stuck
    app.register_error_handler(Exception, _from_unexpected)
