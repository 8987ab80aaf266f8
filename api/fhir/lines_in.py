"""One ServiceRequest of a transaction in, one line of the JSON API's prescription dict out.

Reads JSON already validated by fhir.resources. Elements EPU cannot store are refused rather
than dropped; unknown extensions (never modifier extensions) are ignored, as FHIR allows.
"""

import re
from typing import Any

from api.fhir import systems as s
from api.fhir.layout import Layout
from api.fhir.outcome import invalid
from api.prescriptions.schemas import IDENTITY_MESSAGE
from epu.actors import Actor
from epu.catalogue import fold
from epu.instructions import PATIENT_INSTRUCTIONS

SERVICE_REQUEST_ELEMENTS = {
    *("resourceType", "id", "meta", "text", "contained", "extension", "identifier", "status"),
    *("intent", "category", "priority", "code", "subject", "authoredOn", "requester"),
    *("reasonCode", "supportingInfo", "note", "patientInstruction", "requisition"),
}
PATIENT_ELEMENTS = {"resourceType", "id", "meta", "identifier", "gender", "birthDate"}
OBSERVATION_ELEMENTS = {
    *("resourceType", "id", "meta", "status", "code", "subject", "valueString"),
    *("valueBoolean", "valueInteger", "valueQuantity", "valueDateTime"),
}
INS_SYSTEMS = (s.INS_NIR, s.INS_NIR_TEST, s.INS_NIR_DEMO)  # FR Core Patient INS
URGENT_PRIORITIES = {"urgent", "asap", "stat"}


class LineReader:
    """Reads each ServiceRequest into a line, and what the prescription shares."""

    def __init__(self, actor: Actor, layout: Layout, patients: dict[str, tuple[str, dict]]):
        self.actor, self.layout, self.patients = actor, layout, patients
        self.patient: dict[str, Any] | None = None
        self.shared: dict[str, Any] = {}
        self.identifiers: list[str] = []
        self.used_patients: set[str] = set()

    def line(self, resource: dict[str, Any], index: int) -> dict[str, Any]:
        at = f"Bundle.entry[{index}].resource"
        _check_elements(resource, at)
        self._requester(resource.get("requester"), at)
        self._identifiers(resource.get("identifier") or [], at)
        if resource.get("requisition"):
            self._identifiers([resource["requisition"]], at, ".requisition")
        contained = self._contained(resource, at)
        self._subject(resource, contained, at)
        extensions = _extensions(resource.get("extension") or [])
        line: dict[str, Any] = {
            **self._code(resource.get("code"), at),
            "urgent": resource.get("priority") in URGENT_PRIORITIES,
            "context": self._context(resource.get("supportingInfo") or [], contained, at),
            **_line_extensions(extensions, at),
            "patient_instructions": self._instructions(resource, extensions, at),
        }
        notes = [note.get("text", "") for note in resource.get("note") or []]
        if notes:
            line["comment"] = "\n".join(notes)
        self._share("clinical_context", _reason(resource.get("reasonCode"), at), at)
        if s.EXT_RESULT_RETURN in extensions:
            ext = extensions[s.EXT_RESULT_RETURN][0]
            self._share("result_return", _result_return(ext, at), at)
        return {key: value for key, value in line.items() if value is not None}

    def _requester(self, requester: dict | None, at: str) -> None:
        if requester is None:
            return
        identifier = requester.get("identifier") or {}
        if identifier.get("system") != s.RPPS or identifier.get("value") != self.actor.identifier:
            raise invalid(
                "The requester is the authenticated prescriber: leave it out, or give its "
                f"identifier (system {s.RPPS}, value {self.actor.identifier}).",
                f"{at}.requester",
            )

    def _identifiers(self, identifiers: list[dict], at: str, element: str = "") -> None:
        for index, identifier in enumerate(identifiers):
            where = f"{at}{element or f'.identifier[{index}]'}"
            if identifier.get("system") == s.REQUISITION_SYSTEM:
                raise invalid("The requisition code is assigned by EPU.", where)
            if not identifier.get("system") or not identifier.get("value"):
                raise invalid(
                    "An identifier of the prescriber software needs a system and a value.", where
                )
            self.identifiers.append(f"{identifier['system']}|{identifier['value']}")

    def _contained(self, resource: dict[str, Any], at: str) -> dict[str, tuple[str, dict]]:
        contained = {}
        for index, item in enumerate(resource.get("contained") or []):
            where = f"{at}.contained[{index}]"
            if item.get("resourceType") not in ("Patient", "Observation") or not item.get("id"):
                raise invalid(
                    "Only a Patient and Observations (clinical context) may be contained, "
                    "each with an id.",
                    where,
                    code="not-supported",
                )
            contained["#" + item["id"]] = (where, item)
        referenced = {(resource.get("subject") or {}).get("reference")}
        referenced |= {info.get("reference") for info in resource.get("supportingInfo") or []}
        for reference, (where, _) in contained.items():
            if reference not in referenced:
                raise invalid("A contained resource is referenced by the ServiceRequest.", where)
        return contained

    def _subject(self, resource: dict, contained: dict, at: str) -> None:
        reference = (resource.get("subject") or {}).get("reference")
        where, patient = contained.get(reference) or self.patients.get(reference) or (None, None)
        if patient is None or patient.get("resourceType") != "Patient":
            raise invalid(
                "The subject refers to a contained Patient (#id) or to the Patient entry's "
                "fullUrl.",
                f"{at}.subject",
            )
        read = _patient(patient, where)
        self.used_patients.add(where)
        if self.patient is None:
            self.patient, self.layout.patient = read, where
        elif read != self.patient:
            raise invalid("All the ServiceRequests are for the same patient.", f"{at}.subject")

    def _code(self, code: dict | None, at: str) -> dict[str, Any]:
        code = code or {}
        loincs = [c for c in code.get("coding") or [] if c.get("system") == s.LOINC]
        if len(loincs) > 1:
            raise invalid("One LOINC code per ServiceRequest.", f"{at}.code.coding")
        if loincs and loincs[0].get("code") == s.FREE_TEXT_LOINC:
            if not code.get("text"):
                raise invalid(
                    f"LOINC {s.FREE_TEXT_LOINC} (an exam outside the value set) names the exam "
                    "in code.text.",
                    f"{at}.code.text",
                )
            return {"text": code["text"]}
        if loincs:
            return {"loinc": loincs[0].get("code")}
        if code.get("text"):
            return {"text": code["text"]}
        raise invalid(
            f"The exam is a LOINC code (system {s.LOINC}) or, for an exam with no code, "
            f"code.text (with LOINC {s.FREE_TEXT_LOINC} or no coding).",
            f"{at}.code",
        )

    def _context(self, infos: list[dict], contained: dict, at: str) -> list[dict[str, Any]]:
        context = []
        for index, info in enumerate(infos):
            where, item = contained.get(info.get("reference"), (None, None))
            if item is None or item.get("resourceType") != "Observation":
                raise invalid(
                    "supportingInfo refers to a contained Observation (#id) giving a LOINC "
                    "code and a value.",
                    f"{at}.supportingInfo[{index}]",
                )
            context.append(_observation(item, where))
        return context

    def _instructions(self, resource: dict, extensions: dict, at: str) -> list[str]:
        if s.EXT_PATIENT_INSTRUCTION in extensions:
            return [_value(e, at, "valueCode") for e in extensions[s.EXT_PATIENT_INSTRUCTION]]
        text = resource.get("patientInstruction")
        if not text:
            return []
        by_label = {fold(label): code for code, label in PATIENT_INSTRUCTIONS.items()}
        codes = []
        for part in filter(None, (p.strip() for p in re.split(r"[\n;]", text))):
            code = part.upper() if part.upper() in PATIENT_INSTRUCTIONS else None
            code = code or by_label.get(fold(part))
            if code is None:
                raise invalid(
                    f"{part!r} is not a patient instruction of the CI-SIS value set: give the "
                    f"codes (MED-1160 to MED-1165) in extension {s.EXT_PATIENT_INSTRUCTION}.",
                    f"{at}.patientInstruction",
                )
            codes.append(code)
        return codes

    def _share(self, key: str, value: Any, at: str) -> None:
        """A prescription-level value repeated on the ServiceRequests: they must agree."""
        if value is None:
            return
        if key in self.shared and self.shared[key] != value:
            raise invalid(f"The ServiceRequests of one prescription disagree on {key}.", at)
        self.shared[key] = value


def _check_elements(resource: dict[str, Any], at: str) -> None:
    for name in resource:
        if name not in SERVICE_REQUEST_ELEMENTS:
            detail = f"ServiceRequest.{name} is not supported by EPU."
            raise invalid(detail, f"{at}.{name}", code="not-supported")
    if resource.get("status") != "active":
        raise invalid("A new ServiceRequest has status 'active'.", f"{at}.status")
    if resource.get("intent") != "order":
        raise invalid("A prescription's ServiceRequest has intent 'order'.", f"{at}.intent")


def _line_extensions(extensions: dict[str, list[dict]], at: str) -> dict[str, Any]:
    line: dict[str, Any] = {}
    for key, url in (
        ("ald", s.EXT_ALD),
        ("prevention", s.EXT_PREVENTION),
        ("work_accident", s.EXT_WORK_ACCIDENT),
        ("not_reimbursable", s.EXT_NOT_REIMBURSABLE),
        ("off_nomenclature", s.EXT_OFF_NOMENCLATURE),
    ):
        if url in extensions:
            line[key] = _value(extensions[url][0], at, "valueBoolean")
    if s.EXT_RENEWALS in extensions:
        line["renewals"] = _value(
            extensions[s.EXT_RENEWALS][0], at, "valueUnsignedInt", "valueInteger"
        )
    if s.EXT_URGENT_REASON in extensions:
        line["urgent_reason"] = _value(extensions[s.EXT_URGENT_REASON][0], at, "valueString")
    if s.EXT_SAMPLING in extensions:
        line["sampling_instructions"] = _value(extensions[s.EXT_SAMPLING][0], at, "valueString")
    return line


def _patient(patient: dict[str, Any], at: str) -> dict[str, Any]:
    for name in patient:
        if name not in PATIENT_ELEMENTS:
            raise invalid(IDENTITY_MESSAGE, f"{at}.{name}")
    ins = None
    for index, identifier in enumerate(patient.get("identifier") or []):
        where = f"{at}.identifier[{index}]"
        if identifier.get("system") == s.INS_NIA:
            raise invalid(
                "An INS-NIA is a temporary identifier: EPU needs the patient's qualified INS "
                f"(INS-NIR, system {s.INS_NIR}).",
                where,
            )
        if identifier.get("system") not in INS_SYSTEMS or ins is not None:
            raise invalid(
                "The only identifier accepted is one INS: INS-NIR (system "
                f"{s.INS_NIR}), or INS-NIR-TEST / INS-NIR-DEMO ({s.INS_NIR_TEST}, "
                f"{s.INS_NIR_DEMO}). " + IDENTITY_MESSAGE,
                where,
            )
        if identifier.get("use") not in (None, "official"):
            raise invalid("An INS is an identifier with use official.", f"{where}.use")
        ins = identifier.get("value")
    read = {"sex": patient.get("gender"), "birth_date": patient.get("birthDate")}
    if ins is not None:
        read["ins"] = ins
    return read


def _observation(item: dict[str, Any], at: str) -> dict[str, Any]:
    for name in item:
        if name not in OBSERVATION_ELEMENTS:
            raise invalid(
                f"Observation.{name} is not supported in clinical context.",
                f"{at}.{name}",
                code="not-supported",
            )
    loincs = [c for c in (item.get("code") or {}).get("coding") or [] if c.get("system") == s.LOINC]
    if len(loincs) != 1:
        raise invalid("A clinical context item has one LOINC code.", f"{at}.code")
    values = [item[k] for k in item if k.startswith("value")]
    if len(values) != 1:
        raise invalid("A clinical context item has a value.", f"{at}.value")
    value = values[0]
    if isinstance(value, dict):  # valueQuantity
        value = value.get("value")
        if value is None:
            raise invalid("A quantity needs a value.", f"{at}.valueQuantity")
    return {"code": loincs[0].get("code"), "value": value}


def _reason(reasons: list[dict] | None, at: str) -> str | None:
    if not reasons:
        return None
    texts = []
    for index, reason in enumerate(reasons):
        if not reason.get("text"):
            raise invalid(
                "The clinical context is given as reasonCode.text.", f"{at}.reasonCode[{index}]"
            )
        texts.append(reason["text"])
    return "\n".join(texts)


def _result_return(extension: dict[str, Any], at: str) -> dict[str, Any]:
    where = f"{at}.extension('{s.EXT_RESULT_RETURN}')"
    result: dict[str, Any] = {"channels": [], "copies_to": []}
    for part in extension.get("extension") or []:
        url = part.get("url")
        if url == "channel":
            result["channels"].append(_value(part, where, "valueCode"))
        elif url == "phone":
            result["phone"] = _value(part, where, "valueString")
        elif url == "copy-to":
            reference = part.get("valueReference") or {}
            identifier = reference.get("identifier") or {}
            if identifier.get("system") != s.RPPS:
                raise invalid("copy-to is a valueReference with an RPPS identifier.", where)
            copy = {"rpps": identifier.get("value")}
            if reference.get("display"):
                copy["name"] = reference["display"]
            result["copies_to"].append(copy)
        else:
            raise invalid(f"Unknown result-return part {url!r}.", where, code="not-supported")
    return result


def _extensions(extensions: list[dict]) -> dict[str, list[dict]]:
    """Our extensions by URL; unknown ones (not modifiers) are ignored as FHIR allows."""
    found: dict[str, list[dict]] = {}
    for extension in extensions:
        found.setdefault(extension.get("url"), []).append(extension)
    return found


def _value(extension: dict[str, Any], at: str, *names: str) -> Any:
    for name in names:
        if name in extension:
            return extension[name]
    url = extension.get("url")
    raise invalid(f"Extension {url} takes a {' or '.join(names)}.", f"{at}.extension('{url}')")
