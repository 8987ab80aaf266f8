"""A search result held in full (a few prescriptions at most) served `_count` at a time."""

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from api.auth import current_actor
from api.fhir import cursors, outbound, params, subsets
from api.fhir.wire import base_url

PAGE_BYTES = 1_800_000  # of resources; the entries' wrapping adds at most 200 x 150 bytes
Resource = dict[str, Any] | outbound.Encoded  # built, or kept encoded (kept_service_request)


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
    resources: list[Resource],
    state: dict[str, Any] | None,
    **kept: Any,
) -> dict[str, Any]:
    """One page of `resources` from the cursor's offset; `kept` goes on in the next cursor."""
    result = params.result(query)
    offset = int((state or {}).get("offset", 0))
    page = resources[offset : offset + result.count]

    def go_on(shown: int) -> dict[str, Any] | None:
        if offset + shown >= len(resources):
            return None
        return state_for(offset=offset + shown, **kept)

    return bundle(query, page, go_on, len(resources))


def bundle(
    query: params.Search,
    resources: Iterable[Resource],
    go_on: Callable[[int], dict[str, Any] | None] | None,
    total: int | None,
) -> dict[str, Any]:
    """The searchset: `go_on(n)` is the cursor's state after the first n resources of this
    page (None: nothing more). The page holds at most PAGE_BYTES of resources, each encoded
    once: the worst page stays under 2 MB whatever `_count`."""
    result = params.result(query)
    if result.count_only:
        resources, go_on = [], None
    if result.elements is not None:
        resources = (subsets.elements(_plain(item), result.elements) for item in resources)
    encoded = fit(resources)
    state = go_on(len(encoded)) if go_on else None
    next_url = next_link(query, state) if state is not None else None
    self_url = params.link(query, _cursor=query.one("_cursor"), _count=_applied_count(query))
    return outbound.searchset(base_url(), encoded, self_url, next_url, total)


def fit(resources: Iterable[Resource]) -> list[outbound.Encoded]:
    """The resources encoded once (unless they come encoded), as many as PAGE_BYTES holds (at
    least one); those not taken are never built when `resources` is a generator."""
    encoded, size = [], 0
    for resource in resources:
        if not isinstance(resource, outbound.Encoded):
            data = orjson.dumps(resource)
            resource = outbound.Encoded(resource["resourceType"], resource["id"], data)
        if encoded and size + len(resource.data) > PAGE_BYTES:
            break
        encoded.append(resource)
        size += len(resource.data)
    return encoded


def _plain(resource: Resource) -> dict[str, Any]:
    if isinstance(resource, outbound.Encoded):
        return orjson.loads(resource.data)
    return resource
