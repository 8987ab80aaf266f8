"""Parameters of the laboratory's operations on the Task: $take, $release, $complete.

Read with fhir.resources, then loaded by the JSON API's own schemas (ScanIn, DoneIn) so the
rules are the same; outcomes "done" and "not-done".
"""

from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.parameters import Parameters
from marshmallow import ValidationError as MarshmallowError

from api.errors import flatten
from api.fhir import systems as s
from api.fhir.outbound import service_request_id
from api.fhir.outcome import FhirError, Issue, invalid
from api.fhir.wire import parse
from api.laboratory.schemas import DoneIn, ScanIn

Place = Callable[[str], str]
TAKE_PARAMETERS = ("code", "patient-ins", "patient-objects-to-sharing")
TAKE_FIELDS = {  # the JSON API's field -> the parameter
    "code": "code",
    "patient_ins": "patient-ins",
    "patient_objects_to_sharing": "patient-objects-to-sharing",
}
OUTCOMES = {"done": "done", "not-done": "not_done"}


def take(body: dict[str, Any] | None, code: str | None) -> tuple[dict[str, Any], Place]:
    """$take on the type (the code is a parameter) or on a Task (its id is the code)."""
    parameters = _parameters(body)
    given = [parameter["name"] for parameter in parameters]
    for index, name in enumerate(given):
        if name not in TAKE_PARAMETERS:
            raise invalid(f"Unexpected parameter {name!r}.", _at(index))
        if given.count(name) > 1:
            raise invalid(f"Parameter {name!r} is given twice.", _at(index))
    names = {name: index for index, name in enumerate(given)}
    raw: dict[str, Any] = {}
    if code is not None:
        if "code" in names:
            raise invalid("The code is the Task's id here.", _at(names["code"]))
        raw["code"] = code
    elif "code" in names:
        raw["code"] = _string(parameters[names["code"]], s.REQUISITION_SYSTEM, names["code"])
    if "patient-ins" in names:
        index = names["patient-ins"]
        raw["patient_ins"] = _string(parameters[index], s.INS_NIR, index)
    if "patient-objects-to-sharing" in names:
        index = names["patient-objects-to-sharing"]
        raw["patient_objects_to_sharing"] = _value(parameters[index], index, "valueBoolean")

    def place(path: str) -> str:
        name = TAKE_FIELDS.get(path.split(".")[0])
        return _at(names[name]) if name in names else "Parameters"

    return _load(ScanIn(), raw, place), place


def complete(body: dict[str, Any] | None, code: str) -> tuple[list[dict[str, Any]], Place]:
    """Line outcomes: parameter "line" (repeated) with parts request, outcome, reason."""
    parameters = _parameters(body)
    lines, positions = [], []
    for index, parameter in enumerate(parameters):
        if parameter["name"] != "line":
            raise invalid(f"Unexpected parameter {parameter['name']!r}.", _at(index))
        lines.append(_line(parameter, index, code))
        positions.append(index)

    def place(path: str) -> str:
        head = path.split(".")[0]
        if head.startswith("lines[") and head.endswith("]"):
            number = int(head[6:-1])
            return _at(positions[number]) if number < len(positions) else "Parameters"
        return "Parameters"

    return _load(DoneIn(), {"lines": lines}, place)["lines"], place


def _line(parameter: dict[str, Any], index: int, code: str) -> dict[str, Any]:
    line: dict[str, Any] = {}
    for part in parameter.get("part") or []:
        name = part.get("name")
        if name == "request":
            target = (part.get("valueReference") or {}).get("reference", "")
            prefix = f"ServiceRequest/{service_request_id(code, '')}"
            if not target.startswith(prefix):
                raise invalid(
                    f"request refers to a ServiceRequest of this Task ({prefix}L1...).",
                    _at(index) + ".part",
                )
            line["line_id"] = target.removeprefix(prefix)
        elif name == "outcome":
            value = _value(part, index, "valueCode")
            line["outcome"] = OUTCOMES.get(value, value)
        elif name == "reason":
            line["reason"] = _value(part, index, "valueString")
        else:
            raise invalid(f"Unexpected part {name!r}.", _at(index) + ".part")
    return line


def no_parameters(body: dict[str, Any] | None) -> None:
    for index, parameter in enumerate(_parameters(body)):
        raise invalid(f"Unexpected parameter {parameter['name']!r}.", _at(index))


def _parameters(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    if body is None:
        return []
    parse(Parameters, body, "Parameters")
    return body.get("parameter") or []


def _string(parameter: dict[str, Any], system: str, index: int) -> str:
    if "valueIdentifier" in parameter:
        identifier = parameter["valueIdentifier"]
        if identifier.get("system") not in (None, system):
            raise invalid(f"The identifier's system is {system}.", _at(index))
        return identifier.get("value", "")
    return _value(parameter, index, "valueString")


def _value(parameter: dict[str, Any], index: int, name: str) -> Any:
    if name not in parameter:
        raise invalid(f"{parameter.get('name')!r} takes a {name}.", _at(index))
    return parameter[name]


def _at(index: int) -> str:
    return f"Parameters.parameter[{index}]"


def _load(schema, raw: dict[str, Any], place: Place) -> dict[str, Any]:
    try:
        return schema.load(raw)
    except MarshmallowError as error:
        raise refusal(flatten(error.messages), place) from error


def refusal(errors: dict[str, str], place: Place) -> FhirError:
    """Field errors (JSON paths, from a schema or the domain) pointing at the parameters."""
    issues = [
        Issue(f"{path}: {message}", "invalid", expression=(place(path),), slug="validation")
        for path, message in errors.items()
    ]
    return FhirError(422, issues)


def take_output(task: dict[str, Any], ins_match: bool | None) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [{"name": "return", "resource": task}]
    if ins_match is not None:
        parameters.append({"name": "ins-match", "valueBoolean": ins_match})
    return {"resourceType": "Parameters", "parameter": parameters}
