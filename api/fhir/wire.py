"""The wire: media types, bodies parsed with fhir.resources, responses, ETags and URLs."""

import re
from datetime import datetime
from email.utils import format_datetime
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
FORMATS = ("json", FHIR_JSON, "application/json", "application/json+fhir")
ACCEPTED_TYPES = (*FORMATS[1:], "application/*", "*/*")
FHIR_VERSIONS = ("4.0", "4.0.1")
MAX_ISSUES = 100  # an invalid resource is answered with its first issues, not all of them
MAX_ENTRIES = 100  # a transaction holds a prescription: its lines and a few resources
_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_VERSION = re.compile(r'(?:W/)?"(\d{1,18})"')

Model = TypeVar("Model", bound=FHIRAbstractModel)


def check_media_types() -> None:
    """Blueprint before_request: JSON bodies in, FHIR JSON out (415 and 406 otherwise).

    `_format` overrides Accept; `fhirVersion` on either media type must be R4 (4.0, 4.0.1)."""
    fmt = request.args.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().replace(" ", "+") not in FORMATS:  # an unescaped "+"
            detail = f"_format {fmt[:60]!r} is not supported: use json."
            raise FhirError(406, [Issue(detail, "not-supported")])
    elif not _acceptable(request.headers.get("Accept", "")):
        detail = f"This server answers {FHIR_JSON} (fhirVersion 4.0) only."
        raise FhirError(406, [Issue(detail, "not-supported")])
    if request.method != "POST":
        return
    has_body = request.content_length or (request.content_length is None and request.data)
    accepted = (*INBOUND_TYPES, FORM) if request.path.endswith("/_search") else INBOUND_TYPES
    if has_body:
        parameters = {name.lower(): value for name, value in request.mimetype_params.items()}
        version = parameters.get("fhirversion")
        if request.mimetype not in accepted or version not in (None, *FHIR_VERSIONS):
            detail = f"Send the body as {FHIR_JSON}, not {request.content_type or 'nothing'}."
            raise FhirError(415, [Issue(detail[:300], "not-supported")])


def _acceptable(header: str) -> bool:
    """Whether an Accept header admits FHIR JSON R4 (its fhirVersion parameter read too)."""
    if not header.strip():
        return True
    for item in header.split(",")[:50]:
        media, *parameters = (part.strip() for part in item.split(";"))
        values = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        if media.lower() not in ACCEPTED_TYPES or _quality(values.get("q", "1")) <= 0:
            continue
        if values.get("fhirversion", FHIR_VERSIONS[0]) in FHIR_VERSIONS:
            return True
    return False


def _quality(value: str) -> float:
    try:
        return float(value[:8])
    except ValueError:
        return 0.0


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
    entries = body.get("entry")
    if isinstance(entries, list) and len(entries) > MAX_ENTRIES:
        detail = f"A {root} holds at most {MAX_ENTRIES} entries here, not {len(entries)}."
        raise FhirError(413, [Issue(detail, "too-costly", expression=(f"{root}.entry",))])
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as error:
        found = error.error_count()
        issues = [
            Issue(f"{item['msg']}", "structure", expression=(fhir_path(root, item["loc"]),))
            for item in error.errors(include_url=False, include_context=False)[:MAX_ISSUES]
        ]
        if found > MAX_ISSUES:
            detail = f"{found} issues found; only the first {MAX_ISSUES} are listed."
            issues.append(Issue(detail, "too-costly", severity="information"))
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
    return respond_encoded(orjson.dumps(resource), status, **headers)


def respond_encoded(resource: bytes, status: int = 200, **headers: str) -> Response:
    response = Response(resource, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
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


def if_none_match_star() -> bool:
    return request.headers.get("If-None-Match", "").strip() == "*"


def not_modified(version: int) -> Response:
    """304 with the resource's current ETag (never the client's header echoed back)."""
    return Response(status=304, headers={"ETag": etag(version)})


def versioned(view: dict[str, Any]) -> dict[str, str]:
    """ETag and Last-Modified of a read."""
    moment = datetime.fromisoformat(view["updated_at"].replace("Z", "+00:00"))
    return {"ETag": etag(view["version"]), "Last-Modified": format_datetime(moment, usegmt=True)}


def if_match_versions() -> set[int] | None:
    """Versions named by If-Match as FHIR clients send it (W/"3" or "3"); None: no If-Match or
    *. A header naming no version matches nothing (412)."""
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        return None
    return {int(version) for version in _VERSION.findall(header)[:20]}


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
