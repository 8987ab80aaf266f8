"""FHIR for the patient lookup and the nurse's samplings (issue 10), beside the core routes.

- POST /fhir/Task/_search with `patient-identifier` (INS) and `patient-birthdate`: the patient
  lookup of the JSON API, answered as Tasks (laboratories and nurses).
- GET /fhir/Specimen/<id>: one specimen of a nurse's sampling; ServiceRequest.specimen points
  to them and Task.businessStatus carries `specimen-collected` once a nurse sampled.
- POST /fhir/Task/<code>/$record-sampling: a nurse records a sampling (Parameters).
"""

from datetime import date, datetime
from typing import Any

from flask import Blueprint, request

from api.auth import current_actor, require
from api.context import ins_key
from api.extensions import db_session
from api.fhir import outbound, wire
from api.fhir import systems as s
from api.fhir.outcome import FhirError, Issue, invalid, register_blueprint_handlers
from api.fhir.specimens import EXT_CONTAINERS, specimen
from api.limits import limits
from epu import lookups, samplings, specimen_types, views
from epu.actors import LAB, NURSE, PRESCRIBER, Actor
from epu.errors import ValidationFailed
from models import Prescription

blp = Blueprint("fhir_nursing", __name__, url_prefix="/fhir")
blp.before_request(wire.check_media_types)
register_blueprint_handlers(blp)

INS_SYSTEMS = (s.INS_NIR, s.INS_NIR_TEST)
LOOKUP_PARAMETERS = ("patient-identifier", "patient-birthdate", "presence")


def post(rule: str):
    return blp.route(rule, methods=["POST"], provide_automatic_options=False)


def get(rule: str):
    return blp.route(rule, methods=["GET"], provide_automatic_options=False)


# ---- the patient lookup, as a Task search ----------------------------------------------------


@post("/Task/_search")
@require(LAB, NURSE, PRESCRIBER)
def search_tasks_by_patient():
    """A prescriber's Task search by code goes on as GET /fhir/Task; by patient, only here."""
    form = wire.form_body()
    for name in request.args:
        if name in LOOKUP_PARAMETERS:
            raise _bad(f"{name} never goes in a URL: send it in the body.", name, "security")
    unknown = [n for n in (*form, *request.args) if n not in (*LOOKUP_PARAMETERS, "_format")]
    if unknown:
        raise _bad(f"Unknown search parameter {unknown[0]!r} for Task/_search.", unknown[0])
    actor = current_actor()
    if actor.is_prescriber:
        raise FhirError(
            403, [Issue("The patient lookup is open to laboratories and nurses.", "forbidden")]
        )
    ins = _ins(form.getlist("patient-identifier"))
    birth_date = _birth_date(form.getlist("patient-birthdate"))
    presence = _one(form.getlist("presence"), "presence") or "declared"
    limits().count_lookup(actor)
    try:
        found = lookups.lookup(
            session=db_session(),
            actor=actor,
            ins=ins,
            birth_date=birth_date,
            presence=presence,
            ins_key=ins_key(),
            view=_task_view,
        )
    except ValidationFailed as error:
        path, message = next(iter(error.errors.items()))
        name = {"ins": "patient-identifier", "birth_date": "patient-birthdate"}.get(path, path)
        raise _bad(f"{name}: {message}.", name) from error
    tasks = [outbound.task(item) for item in found["items"]]
    self_url = wire.absolute("/Task/_search")
    return wire.respond(outbound.searchset(wire.base_url(), tasks, self_url, None, len(tasks)))


def _task_view(prescription: Prescription, actor: Actor) -> dict[str, Any]:
    view = views.status(prescription, actor)
    if actor.is_nurse:  # never the laboratory, nor what it did
        view.update(laboratory=None, modified=None)
    return view


def _bad(detail: str, parameter: str, code: str = "invalid") -> FhirError:
    return FhirError(400, [Issue(detail, code, expression=(parameter,))])


def _one(values: list[str], name: str) -> str | None:
    if len(values) > 1:
        raise _bad(f"{name} takes one value.", name)
    return values[0] if values else None


def _ins(values: list[str]) -> str:
    value = _one(values, "patient-identifier")
    if value is None:
        raise _bad("patient-identifier (the INS) is required.", "patient-identifier", "required")
    system, bar, ins = value.rpartition("|")
    if not bar or system not in INS_SYSTEMS:
        raise _bad(
            f"patient-identifier is <system>|<INS> with the system {s.INS_NIR} (INS-NIR) or "
            f"{s.INS_NIR_TEST} (INS-NIR test).",
            "patient-identifier",
        )
    return ins


def _birth_date(values: list[str]) -> date:
    value = _one(values, "patient-birthdate")
    if value is None:
        raise _bad("patient-birthdate (YYYY-MM-DD) is required.", "patient-birthdate", "required")
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError as error:
        raise _bad("patient-birthdate is a date: YYYY-MM-DD.", "patient-birthdate") from error


# ---- Specimen --------------------------------------------------------------------------------


@get("/Specimen/<resource_id>")
@require(PRESCRIBER, LAB, NURSE)
def read_specimen(resource_id: str):
    sampling_id, _, index = resource_id.rpartition("-")
    if not sampling_id or not index.isdigit():
        raise _not_found()
    code, sampling = samplings.for_reading(
        session=db_session(), actor=current_actor(), sampling_id=sampling_id
    )
    if not 1 <= int(index) <= len(sampling["specimens"]):
        raise _not_found()
    return wire.respond(specimen(code, sampling, int(index)))


def _not_found() -> FhirError:
    return FhirError(404, [Issue("No Specimen with this id is available to you.", "not-found")])


# ---- a nurse records a sampling ----------------------------------------------------------------


@post("/Task/<code>/$record-sampling")
@require(NURSE)
def record_sampling(code: str):
    data = _sampling_from_parameters(wire.json_body())
    try:
        body = samplings.record_sampling(
            session=db_session(), actor=current_actor(), code=code, data=data
        )
    except ValidationFailed as error:
        path, message = next(iter(error.errors.items()))
        raise invalid(f"{path}: {message}", f"Parameters.parameter({path})") from error
    specimens = [specimen(code, body, index) for index in range(1, len(body["specimens"]) + 1)]
    bundle = outbound.searchset(wire.base_url(), specimens, wire.absolute(request.path), None, None)
    bundle["type"] = "collection"
    del bundle["link"]
    for entry in bundle.get("entry", []):
        del entry["search"]
    return wire.respond(bundle, 201)


def _sampling_from_parameters(body: dict[str, Any]) -> dict[str, Any]:
    """Parameters: collected (valueDateTime), specimen (resource Specimen: type, request,
    the container-count extension) repeated, not-collected (parts line, reason) repeated,
    comment (valueString), destination (valueIdentifier, FINESS)."""
    if body.get("resourceType") != "Parameters":
        raise invalid("The body is a Parameters resource.", "Parameters", status=400)
    data: dict[str, Any] = {"specimens": [], "not_collected": []}
    given = body.get("parameter")
    for position, parameter in enumerate(given if isinstance(given, list) else []):
        if not isinstance(parameter, dict):
            raise invalid("Each parameter is an object.", f"Parameters.parameter[{position}]")
        if len(data["specimens"]) > samplings.MAX_SPECIMENS:
            raise invalid(f"At most {samplings.MAX_SPECIMENS} specimens.", "Parameters")
        name = parameter.get("name")
        if name == "collected":
            data["collected_at"] = _moment(parameter.get("valueDateTime"), position)
        elif name == "specimen":
            data["specimens"].append(_specimen_in(parameter.get("resource"), position))
        elif name == "not-collected":
            parts = {
                part.get("name"): part.get("valueString") for part in _dicts(parameter, "part")
            }
            data["not_collected"].append(
                {"line": _text(parts.get("line")), "reason": _text(parts.get("reason"))}
            )
        elif name == "comment":
            data["comment"] = _text(parameter.get("valueString"))[:1000]
        elif name == "destination":
            identifier = parameter.get("valueIdentifier")
            value = identifier.get("value") if isinstance(identifier, dict) else None
            data["destination"] = {"finess": _text(value)[:9]}
        else:
            raise invalid(f"Unknown parameter {name!r}.", f"Parameters.parameter[{position}]")
    if "collected_at" not in data:
        raise invalid("collected (valueDateTime with its offset) is required.", "Parameters")
    return data


def _dicts(container: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = container.get(name)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _moment(value: Any, position: int):
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in str(value):
        raise invalid(
            "collected is a dateTime with its time zone offset.",
            f"Parameters.parameter[{position}].valueDateTime",
        )
    return moment


def _specimen_in(resource: Any, position: int) -> dict[str, Any]:
    where = f"Parameters.parameter[{position}].resource"
    if not isinstance(resource, dict) or resource.get("resourceType") != "Specimen":
        raise invalid("specimen holds a Specimen resource.", where)
    kind = resource.get("type")
    codings = _dicts(kind, "coding") if isinstance(kind, dict) else []
    types = [_text(c.get("code")) for c in codings if c.get("system") == specimen_types.FHIR_SYSTEM]
    lines = [
        _text(reference.get("reference")).removeprefix("ServiceRequest/").rpartition("-")[2][:8]
        for reference in _dicts(resource, "request")
    ][:50]
    count = 1
    for extension in _dicts(resource, "extension"):
        if extension.get("url") == EXT_CONTAINERS:
            count = extension.get("valueUnsignedInt")
    if (
        not isinstance(count, int)
        or isinstance(count, bool)
        or not 1 <= count <= samplings.MAX_COUNT
    ):
        raise invalid(f"The container count is 1 to {samplings.MAX_COUNT}.", f"{where}.extension")
    return {"type": types[0] if types else "", "lines": lines, "count": count}
