"""A search result held in full (a few prescriptions at most) served `_count` at a time."""

from typing import Any

from api.auth import current_actor
from api.fhir import cursors, outbound, params, subsets
from api.fhir.wire import base_url


def state_for(**values: Any) -> dict[str, Any]:
    """A cursor's content, bound to the caller (another client's cursor is refused)."""
    return {"client": current_actor().client_pk, **values}


def cursor_state(query: params.Search) -> dict[str, Any] | None:
    state = cursors.opened(query.one("_cursor"))
    if state is not None and state.get("client") != current_actor().client_pk:
        raise params.bad("_cursor is not one this server gave you.", "_cursor")
    return state


def next_link(query: params.Search, state: dict[str, Any]) -> str:
    return params.link(query, _cursor=cursors.seal(state), _count=_applied_count(query))


def _applied_count(query: params.Search) -> str | None:
    return str(params.result(query).count) if query.has("_count") else None


def listed(
    query: params.Search,
    resources: list[dict[str, Any]],
    state: dict[str, Any] | None,
    **kept: Any,
) -> dict[str, Any]:
    """One page of `resources` from the cursor's offset; `kept` goes on in the next cursor."""
    result = params.result(query)
    offset = int((state or {}).get("offset", 0))
    page = resources[offset : offset + result.count]
    next_url = None
    if offset + result.count < len(resources) and not result.count_only:
        next_url = next_link(query, state_for(offset=offset + result.count, **kept))
    return bundle(query, page, next_url, len(resources))


def bundle(
    query: params.Search,
    resources: list[dict[str, Any]],
    next_url: str | None,
    total: int | None,
) -> dict[str, Any]:
    result = params.result(query)
    if result.count_only:
        resources, next_url = [], None
    if result.elements is not None:
        resources = [subsets.elements(resource, result.elements) for resource in resources]
    self_url = params.link(query, _cursor=query.one("_cursor"), _count=_applied_count(query))
    return outbound.searchset(base_url(), resources, self_url, next_url, total)
