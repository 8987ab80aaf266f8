"""The wire: media types, bodies parsed with fhir.resources, responses, ETags and URLs."""

import re
from ipaddress import ip_address
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import pydantic
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from flask import Response, request
from werkzeug.datastructures import MultiDict

from api.context import settings
from api.fhir.outcome import FhirError, Issue
from api.fhir.systems import FHIR_JSON
from api.proxies import PROXIED

INBOUND_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")
FORM = "application/x-www-form-urlencoded"
OUTBOUND_TYPES = [FHIR_JSON, "application/json"]
FORMATS = ("json", FHIR_JSON, "application/json", "application/json+fhir")
_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_VERSION = re.compile(r'(?:W/)?"(\d+)"')

Model = TypeVar("Model", bound=FHIRAbstractModel)


def check_media_types() -> None:
    """Blueprint before_request: JSON bodies in, FHIR JSON out (415 and 406 otherwise)."""
    fmt = request.args.get("_format")
    if fmt is not None and fmt not in FORMATS:
        detail = f"_format {fmt!r} is not supported: use json."
        raise FhirError(406, [Issue(detail, "not-supported")])
    accept = request.accept_mimetypes
    if accept and accept.best_match(OUTBOUND_TYPES) is None:
        detail = f"This server answers {FHIR_JSON} only."
        raise FhirError(406, [Issue(detail, "not-supported")])
    has_body = request.content_length or (request.content_length is None and request.data)
    accepted = (*INBOUND_TYPES, FORM) if request.path.endswith("/_search") else INBOUND_TYPES
    if request.method == "POST" and has_body and request.mimetype not in accepted:
        detail = f"Send the body as {FHIR_JSON}, not {request.mimetype or 'nothing'}."
        raise FhirError(415, [Issue(detail, "not-supported")])


def json_body(*, required: bool = True) -> dict[str, Any] | None:
    if not request.data:
        if required:
            raise FhirError(400, [Issue("A FHIR resource is expected in the body.", "required")])
        return None
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise FhirError(400, [Issue("The body is not a JSON object.", "structure")])
    return body


def form_body() -> MultiDict:
    """The parameters of POST [type]/_search (application/x-www-form-urlencoded)."""
    if request.mimetype != FORM and request.data:
        raise FhirError(415, [Issue(f"POST _search takes {FORM}.", "not-supported")])
    for name, value in request.form.items(multi=True):
        if _FORBIDDEN_CHARACTER.search(name) or _FORBIDDEN_CHARACTER.search(value):
            detail = f"The parameter {name[:40]!r} contains a NUL character or a lone surrogate."
            raise FhirError(400, [Issue(detail, "invalid")])
    return request.form


def parse(model: type[Model], body: dict[str, Any], root: str) -> Model:
    """Validate inbound JSON with fhir.resources; its errors become a 400 OperationOutcome."""
    if body.get("resourceType") != root:
        raise FhirError(
            400,
            [
                Issue(
                    f"Expected a {root} resource, not {body.get('resourceType')!r}.",
                    "structure",
                    expression=(root,),
                )
            ],
        )
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as error:
        issues = [
            Issue(f"{item['msg']}", "structure", expression=(fhir_path(root, item["loc"]),))
            for item in error.errors()
        ]
        raise FhirError(400, issues) from error
    except (KeyError, ValueError, TypeError) as error:  # e.g. an unknown resourceType inside
        raise FhirError(400, [Issue(f"Not a valid {root}: {error}", "structure")]) from error


def fhir_path(root: str, location: tuple) -> str:
    path = root
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def respond(resource: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """The resource (plain data) encoded once."""
    response = Response(
        orjson.dumps(resource), status=status, content_type=f"{FHIR_JSON}; charset=utf-8"
    )
    response.headers.update(headers)
    return response


def etag(version: int) -> str:
    return f'W/"{version}"'


def domain_if_none_match() -> str | None:
    """If-None-Match as FHIR clients send it (W/"3") in the domain's form ("v3")."""
    header = request.headers.get("If-None-Match")
    if not header:
        return None
    return ", ".join(f'"v{version}"' for version in _VERSION.findall(header)) or None


def not_modified() -> Response:
    etag_header = {"ETag": request.headers["If-None-Match"].strip()}
    return Response(status=304, headers=etag_header, content_type=f"{FHIR_JSON}; charset=utf-8")


def preferences() -> dict[str, str]:
    """The Prefer header (RFC 7240) as lower-case name -> value; names and values are read
    case-insensitively."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("Prefer"):
        for item in header.split(","):
            name, _, value = item.split(";")[0].strip().partition("=")
            if name:
                found.setdefault(name.lower(), value.strip().strip('"').lower())
    return found


def base_url() -> str:
    return public_root() + "/fhir"


def public_root() -> str:
    """scheme://host[/prefix] of every absolute URL given: EPU_PUBLIC_BASE_URL; else the
    request's own, when it came through a trusted proxy or to a loopback address (make run)."""
    configured = settings().public_base_url
    if configured:
        return configured
    if request.environ.get(PROXIED) or _is_loopback(urlsplit(f"//{request.host}").hostname):
        return request.url_root.rstrip("/")
    detail = (
        f"This server does not answer for the host {request.host[:100]!r}: set "
        "EPU_PUBLIC_BASE_URL (or EPU_TRUSTED_PROXIES) so that links name it."
    )
    raise FhirError(421, [Issue(detail, "not-supported")])


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def absolute(path: str) -> str:
    return f"{base_url()}/{path}"
