"""Where each part of a prescription sits in the transaction Bundle, to point errors at it.

The domain and the JSON API's schema name fields by JSON paths ("lines[1].loinc"); an
OperationOutcome names them by FHIRPath expressions ("Bundle.entry[2].resource.code.coding").
"""

import re
from dataclasses import dataclass, field

from api.fhir import systems as s
from api.fhir.outcome import FhirError, Issue

_LINE_PATH = re.compile(r"^lines\[(\d+)\](?:\.(\w+))?(?:\[(\d+)\])?")
_LINE_FIELDS = {
    "loinc": ".code.coding",
    "text": ".code.text",
    "urgent": ".priority",
    "ald": f".extension('{s.EXT_ALD}')",
    "prevention": f".extension('{s.EXT_PREVENTION}')",
    "work_accident": f".extension('{s.EXT_WORK_ACCIDENT}')",
    "not_reimbursable": f".extension('{s.EXT_NOT_REIMBURSABLE}')",
    "off_nomenclature": f".extension('{s.EXT_OFF_NOMENCLATURE}')",
    "urgent_reason": f".extension('{s.EXT_URGENT_REASON}')",
    "renewals": f".extension('{s.EXT_RENEWALS}')",
    "patient_instructions": f".extension('{s.EXT_PATIENT_INSTRUCTION}')",
    "sampling_instructions": f".extension('{s.EXT_SAMPLING}')",
    "comment": ".note",
}
_PATIENT_FIELDS = {"ins": ".identifier", "sex": ".gender", "birth_date": ".birthDate"}


@dataclass
class Layout:
    """Where each part of the prescription sits in the Bundle, to point errors at it."""

    line_entries: list[int] = field(default_factory=list)
    patient: str = "Bundle"

    def entry(self, line_index: int) -> str:
        if 0 <= line_index < len(self.line_entries):
            return f"Bundle.entry[{self.line_entries[line_index]}].resource"
        return "Bundle.entry"

    def expression(self, path: str) -> str:
        match = _LINE_PATH.match(path)
        if match:
            index, name, item = int(match[1]), match[2], match[3]
            if name == "context":
                return self.entry(index) + (f".supportingInfo[{item}]" if item else "")
            return self.entry(index) + _LINE_FIELDS.get(name or "", "")
        head, _, rest = path.partition(".")
        if head == "patient":
            return self.patient + _PATIENT_FIELDS.get(rest, "")
        if head == "clinical_context":
            return self.entry(0) + ".reasonCode"
        if head == "result_return":
            return self.entry(0) + f".extension('{s.EXT_RESULT_RETURN}')"
        return "Bundle.entry" if head == "lines" else "Bundle"

    def error(self, errors: dict[str, str], status: int = 422) -> FhirError:
        issues = [
            Issue(
                f"{path}: {message}",
                "invalid",
                expression=(self.expression(path),),
                slug="validation",
            )
            for path, message in errors.items()
        ]
        return FhirError(status, issues)
