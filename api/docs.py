"""OpenAPI documentation of refusals: every problem a client can receive is documented."""

from collections.abc import Callable

from api.blueprint import Blueprint
from api.errors import PROBLEM
from api.schemas import ProblemSchema

ALWAYS = {
    400: "A query parameter or header is malformed (a NUL character, an Idempotency-Key over "
    "200 characters)",
    401: "No valid bearer token",
    403: "The caller's role may not call this operation",
    429: "Too many requests from this client",
    503: "The database is busy or unreachable; retry after Retry-After seconds",
}
WITH_BODY = {
    400: "The body is not valid JSON, or holds what no field may: nesting deeper than 64, NaN, "
    "Infinity, a number beyond 2^53, a NUL character, a lone surrogate",
    413: "The body is too large",
    415: "The body is not JSON",
    422: "The request is not valid (see errors, keyed by field path)",
}
WITH_QUERY = {422: "A query parameter is not valid (see errors)"}


def refusals(blp: Blueprint, statuses: dict[int, str], *groups: dict[int, str]) -> Callable:
    """Document problem+json answers for these statuses, on top of the ones always possible."""
    documented: dict[int, str] = dict(ALWAYS)
    for group in groups:
        documented.update(group)
    documented.update(statuses)

    def decorate(view: Callable) -> Callable:
        # flask-smorest wraps the view once per alt_response only to carry the doc: keep the
        # doc, drop the wrappers, which would otherwise run on every request.
        carrier = view
        for status, description in sorted(documented.items()):
            carrier = blp.alt_response(
                status, schema=ProblemSchema, content_type=PROBLEM, description=description
            )(carrier)
        view._apidoc = carrier._apidoc
        return view

    return decorate
