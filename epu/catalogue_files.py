"""Catalogue files: read the biology catalogue from CSV or FHIR JSON, write it as a CodeSystem.

An entry is a plain dict with the keys loinc, label, synonyms, required_context (a list of
{"code", "label", "type"}) and patient_instructions (codes of PATIENT_INSTRUCTIONS).

CSV convention (UTF-8, optional BOM, "," or ";" between columns, header line required):

    loinc,label,synonyms,required_context,patient_instructions
    2842-3,Prolactine,PRL|Prolactinémie,8665-2:Date des dernières règles:date,MED-1165

Lists (synonyms, required_context, patient_instructions) separate their items with "|"; a
required context item is code:label:type. Both separators are the same with ";" columns.

FHIR: the label is the first French designation (fr or fr-FR; without a language, the
resource's) that is not a synonym, else display. A ValueSet is read from its
compose.include[] of http://loinc.org, or from expansion.contains[] when it has none.
"""

import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import pydantic
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.valueset import ValueSet

from epu import specimen_types
from epu.identifiers import is_loinc
from epu.instructions import PATIENT_INSTRUCTIONS

CODESYSTEM_URL = "https://epu.esante.gouv.fr/fhir/CodeSystem/loinc-circuit-biologie"
LOINC_SYSTEM = "http://loinc.org"
REQUIRED_CONTEXT_EXTENSION = "https://epu.esante.gouv.fr/fhir/StructureDefinition/required-context"
PATIENT_INSTRUCTION_EXTENSION = (
    "https://epu.esante.gouv.fr/fhir/StructureDefinition/patient-instruction"
)
REQUIRED_CONTEXT_PROPERTY = "requiredContext"
PATIENT_INSTRUCTION_PROPERTY = "patientInstruction"
SPECIMEN_PROPERTY = "specimen"
CONTEXT_TYPES = ("boolean", "date", "integer", "quantity", "string")
CSV_COLUMNS = (
    "loinc",
    "label",
    "synonyms",
    "required_context",
    "patient_instructions",
    "specimen",
)
CSV_REQUIRED_COLUMNS = ("loinc", "label")
LIST_SEPARATOR = "|"
CSV_CONTEXT_SEPARATOR = ":"
FHIR_CONTEXT_SEPARATOR = "|"
MAX_LABEL = 300
MAX_SYNONYM = 100
MAX_PROBLEMS = 50

SYNONYM_USE = {
    "system": "http://snomed.info/sct",
    "code": "900000000000013009",
    "display": "Synonym",
}
_SYNONYM_USE_CODES = {"synonym", "900000000000013009"}
_FRENCH = {"fr", "fr-fr"}
_LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")
_ENTRY_KEYS = set(CSV_COLUMNS)
_CONTEXT_KEYS = {"code", "label", "type"}


class CatalogueFileError(ValueError):
    """A catalogue that cannot be imported; `problems` says where and why, one per item."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class _At(NamedTuple):
    where: str
    value: Any


@dataclass
class _Draft:
    """An entry as read from a file, each value with its location for messages."""

    where: str
    loinc: _At
    label: _At
    synonyms: list[_At] = field(default_factory=list)
    context: list[_At] = field(default_factory=list)
    instructions: list[_At] = field(default_factory=list)
    specimen: _At | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # reported in file order


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)

    def raise_if_any(self) -> None:
        if len(self.items) > MAX_PROBLEMS:
            hidden = len(self.items) - MAX_PROBLEMS
            raise CatalogueFileError(
                self.items[:MAX_PROBLEMS] + [f"... and {hidden} more problems"]
            )
        if self.items:
            raise CatalogueFileError(self.items)


# --- public API ------------------------------------------------------------------------------


def parse_catalogue(data: bytes, *, filename: str) -> list[dict[str, Any]]:
    """The entries of a CSV file or FHIR CodeSystem/ValueSet JSON, in file order."""
    is_csv = PurePosixPath(filename.replace("\\", "/")).suffix.lower() == ".csv"
    if not is_csv and not _looks_like_json(data, filename):
        raise CatalogueFileError(
            [
                f"'{filename}': unsupported file, expected a .csv file or a FHIR CodeSystem or "
                "ValueSet in JSON"
            ]
        )
    text = _decode(data)
    if not text.strip():
        raise CatalogueFileError([f"'{filename}' is empty"])
    problems = _Problems()
    if is_csv:
        drafts, hint = _csv_drafts(text, problems), "no line after the header"
    else:
        drafts, hint = _json_drafts(text, problems)
    problems.raise_if_any()
    entries = _entries(drafts, problems, empty_hint=hint)
    problems.raise_if_any()
    return entries


def to_fhir_codesystem(entries: list[dict[str, Any]], *, version: str, date: str) -> dict[str, Any]:
    """The catalogue as a validated FHIR R4 CodeSystem JSON dict; parse_catalogue reads it back."""
    problems = _Problems()
    drafts = [_entry_draft(entry, index) for index, entry in enumerate(entries)]
    checked = _entries(drafts, problems, empty_hint="no entry given")
    problems.raise_if_any()
    resource = {
        "resourceType": "CodeSystem",
        "language": "fr-FR",
        "url": CODESYSTEM_URL,
        "version": version,
        "name": "LoincCircuitBiologie",
        "title": "LOINC circuit de la biologie",
        "status": "active",
        "date": date,
        "content": "fragment",
        "property": [
            {
                "code": REQUIRED_CONTEXT_PROPERTY,
                "description": "Élément de contexte clinique requis : code LOINC|libellé|type",
                "type": "string",
            },
            {
                "code": PATIENT_INSTRUCTION_PROPERTY,
                "description": "Instruction patient (JDV_Bio_instruction_patient_CISIS)",
                "type": "code",
            },
            {
                "code": SPECIMEN_PROPERTY,
                "description": "Type de prélèvement usuel (HL7 v2-0487, "
                "JDV_HL7_SpecimenType_CISIS)",
                "type": "code",
            },
        ],
        "concept": [_concept(entry) for entry in checked],
    }
    model = _validated(CodeSystem, resource)
    return model.model_dump(mode="json", exclude_none=True)


# --- decoding and format detection ---------------------------------------------------------


def _decode(data: bytes) -> str:
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise CatalogueFileError(
            [
                f"line {line}, column {column}: invalid UTF-8 (byte 0x{data[error.start]:02x}); "
                "save the file as UTF-8"
            ]
        ) from None


def _looks_like_json(data: bytes, filename: str) -> bool:
    if filename.lower().endswith(".json"):
        return True
    return data.removeprefix(codecs.BOM_UTF8).lstrip()[:1] in (b"{", b"[")


def _clean(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# --- CSV -----------------------------------------------------------------------------------


def _csv_drafts(text: str, problems: _Problems) -> list[_Draft]:
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    drafts: list[_Draft] = []
    try:
        columns = _csv_header(next(reader, []))
        for line, row in _csv_rows(reader):
            draft = _csv_draft(line, row, columns, problems)
            if draft is not None:
                drafts.append(draft)
    except csv.Error as error:
        raise CatalogueFileError([f"line {reader.line_num}: {error}"]) from None
    return drafts


def _csv_header(row: list[str]) -> list[str]:
    columns = [name.strip().lower() for name in row]
    problems = _Problems()
    expected = ", ".join(CSV_COLUMNS)
    for name in dict.fromkeys(columns):
        if name not in CSV_COLUMNS:
            problems.add("line 1", f"unknown column '{name}' (expected {expected})")
        elif columns.count(name) > 1:
            problems.add("line 1", f"column '{name}' appears {columns.count(name)} times")
    missing = [name for name in CSV_REQUIRED_COLUMNS if name not in columns]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        problems.add(
            "line 1", f"missing required column(s) {names}: the first line must be a header"
        )
    problems.raise_if_any()
    return columns


def _csv_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line they start on (a quoted cell may span lines)."""
    while True:
        line = reader.line_num + 1
        row = next(reader, None)
        if row is None:
            return
        if any(cell.strip() for cell in row):
            yield line, row


def _csv_draft(line: int, row: list[str], columns: list[str], problems: _Problems) -> _Draft | None:
    if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
        problems.add(f"line {line}", f"{len(row)} values but the header has {len(columns)} columns")
        return None
    cells = {
        name: row[index].strip() if index < len(row) else "" for index, name in enumerate(columns)
    }

    def at(name: str) -> str:
        return f"line {line}, column '{name}'"

    draft = _Draft(
        where=f"line {line}",
        loinc=_At(at("loinc"), cells["loinc"]),
        label=_At(at("label"), cells["label"]),
        synonyms=[_At(at("synonyms"), item) for item in _split(cells.get("synonyms", ""))],
        instructions=[
            _At(at("patient_instructions"), item)
            for item in _split(cells.get("patient_instructions", ""))
        ],
        specimen=_At(at("specimen"), cells["specimen"]) if cells.get("specimen") else None,
    )
    for item in _split(cells.get("required_context", "")):
        parsed = _parse_context(item, CSV_CONTEXT_SEPARATOR)
        if parsed is None:
            draft.problems.append(
                (at("required_context"), _context_syntax(item, CSV_CONTEXT_SEPARATOR))
            )
        else:
            draft.context.append(_At(at("required_context"), parsed))
    return draft


def _split(cell: str) -> list[str]:
    return [item.strip() for item in cell.split(LIST_SEPARATOR)] if cell else []


# --- FHIR JSON -----------------------------------------------------------------------------


def _json_drafts(text: str, problems: _Problems) -> tuple[list[_Draft], str]:
    try:
        resource = json.loads(text)
    except json.JSONDecodeError as error:
        raise CatalogueFileError(
            [f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"]
        ) from None
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind == "CodeSystem":
        _validated(CodeSystem, resource)
        return _codesystem_drafts(resource), "the CodeSystem has no concept"
    if kind == "ValueSet":
        _validated(ValueSet, resource)
        hint = f"no concept of {LOINC_SYSTEM} in compose.include[] or expansion.contains[]"
        return _valueset_drafts(resource, problems), hint
    if not isinstance(resource, dict) or "resourceType" not in resource:
        found = "a JSON document without resourceType"
    else:
        found = f"resourceType {json.dumps(kind, ensure_ascii=False)}"
    raise CatalogueFileError([f"{found} is not supported: expected a FHIR CodeSystem or ValueSet"])


def _validated(model: type[CodeSystem] | type[ValueSet], resource: dict[str, Any]) -> Any:
    try:
        return model.model_validate(resource)
    except pydantic.ValidationError as error:
        raise CatalogueFileError(
            [f"{_path(item['loc'])}: {item['msg']}" for item in error.errors()][:MAX_PROBLEMS]
        ) from None


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "resource"


def _walk(items: list[dict[str, Any]], prefix: str, key: str) -> Iterator[tuple[str, dict]]:
    """Nested concepts flattened, parents before their children."""
    for index, item in enumerate(items):
        where = f"{prefix}{key}[{index}]"
        yield where, item
        yield from _walk(item.get(key) or [], f"{where}.", key)


def _codesystem_drafts(resource: dict[str, Any]) -> list[_Draft]:
    language = resource.get("language")
    return [
        _concept_draft(concept, where, language)
        for where, concept in _walk(resource.get("concept") or [], "", "concept")
    ]


def _valueset_drafts(resource: dict[str, Any], problems: _Problems) -> list[_Draft]:
    """Concepts of the LOINC includes; the expansion only when there are none."""
    language = resource.get("language")
    includes = (resource.get("compose") or {}).get("include") or []
    drafts: list[_Draft] = []
    for index, include in enumerate(includes):
        if include.get("system") != LOINC_SYSTEM:
            continue
        where = f"compose.include[{index}]"
        if not include.get("concept"):
            problems.add(where, f"an include of {LOINC_SYSTEM} must list its concepts")
        for position, concept in enumerate(include.get("concept") or []):
            drafts.append(_concept_draft(concept, f"{where}.concept[{position}]", language))
    if drafts or problems.items:
        return drafts
    contains = (resource.get("expansion") or {}).get("contains") or []
    return [
        _concept_draft(item, where, language)
        for where, item in _walk(contains, "expansion.", "contains")
        if item.get("system") == LOINC_SYSTEM and item.get("code")
    ]


def _concept_draft(concept: dict[str, Any], where: str, language: str | None) -> _Draft:
    draft = _Draft(
        where=where,
        loinc=_At(f"{where}.code", _clean(concept.get("code"))),
        label=_At(f"{where}.display", _clean(concept.get("display"))),
    )
    _read_designations(draft, concept.get("designation") or [], language)
    for index, prop in enumerate(concept.get("property") or []):
        at = f"{where}.property[{index}]"
        if prop.get("code") == REQUIRED_CONTEXT_PROPERTY:
            _read_context(draft, at, prop, "valueString")
        elif prop.get("code") == PATIENT_INSTRUCTION_PROPERTY:
            _read_instruction(draft, at, prop, "valueCode")
        elif prop.get("code") == SPECIMEN_PROPERTY:
            draft.specimen = _At(f"{at}.valueCode", _clean(prop.get("valueCode")))
    for index, extension in enumerate(concept.get("extension") or []):
        at = f"{where}.extension[{index}]"
        if extension.get("url") == REQUIRED_CONTEXT_EXTENSION:
            _read_context(draft, at, extension, "valueString")
        elif extension.get("url") == PATIENT_INSTRUCTION_EXTENSION:
            _read_instruction(draft, at, extension, "valueCode")
    return draft


def _read_designations(draft: _Draft, designations: list[dict], language: str | None) -> None:
    """The first French non-synonym designation is the label; French synonyms are synonyms."""
    has_label = False
    for index, designation in enumerate(designations):
        if (designation.get("language") or language or "").lower() not in _FRENCH:
            continue
        value = _At(f"{draft.where}.designation[{index}].value", _clean(designation.get("value")))
        if (designation.get("use") or {}).get("code") in _SYNONYM_USE_CODES:
            draft.synonyms.append(value)
        elif not has_label:
            draft.label, has_label = value, True


def _read_context(draft: _Draft, at: str, holder: dict[str, Any], key: str) -> None:
    text = holder.get(key)
    if not isinstance(text, str):
        draft.problems.append((at, f"a required context needs a {key} 'code|label|type'"))
        return
    parsed = _parse_context(text, FHIR_CONTEXT_SEPARATOR)
    if parsed is None:
        draft.problems.append((f"{at}.{key}", _context_syntax(text, FHIR_CONTEXT_SEPARATOR)))
    else:
        draft.context.append(_At(f"{at}.{key}", parsed))


def _read_instruction(draft: _Draft, at: str, holder: dict[str, Any], key: str) -> None:
    if not isinstance(holder.get(key), str):
        draft.problems.append((at, f"a patient instruction needs a {key}"))
    else:
        draft.instructions.append(_At(f"{at}.{key}", _clean(holder[key])))


def _parse_context(text: str, separator: str) -> dict[str, str] | None:
    """code<sep>label<sep>type; the label may itself hold the separator."""
    parts = text.split(separator)
    if len(parts) < 3:
        return None
    label = separator.join(parts[1:-1])
    return {"code": parts[0].strip(), "label": label.strip(), "type": parts[-1].strip()}


def _context_syntax(text: str, separator: str) -> str:
    example = separator.join(["8665-2", "Date des dernières règles", "date"])
    return (
        f"'{text}' is not a required context item: expected "
        f"code{separator}label{separator}type, e.g. '{example}'"
    )


# --- entries given to to_fhir_codesystem ---------------------------------------------------


def _entry_draft(entry: Any, index: int) -> _Draft:
    where = f"entries[{index}]"
    found: list[tuple[str, str]] = []
    if not isinstance(entry, dict):
        found.append((where, "an entry must be a dict"))
        entry = {}
    found += [(where, f"unexpected key '{key}'") for key in sorted(set(entry) - _ENTRY_KEYS)]

    def items(key: str) -> list[_At]:
        values = entry.get(key) or []
        if not isinstance(values, list):
            found.append((f"{where}.{key}", "must be a list"))
            return []
        return [_At(f"{where}.{key}[{position}]", value) for position, value in enumerate(values)]

    return _Draft(
        where=where,
        loinc=_At(f"{where}.loinc", entry.get("loinc")),
        label=_At(f"{where}.label", entry.get("label")),
        synonyms=items("synonyms"),
        context=items("required_context"),
        instructions=items("patient_instructions"),
        specimen=_At(f"{where}.specimen", entry["specimen"]) if entry.get("specimen") else None,
        problems=found,
    )


def _concept(entry: dict[str, Any]) -> dict[str, Any]:
    concept: dict[str, Any] = {"code": entry["loinc"], "display": entry["label"]}
    if entry["synonyms"]:
        concept["designation"] = [
            {"language": "fr-FR", "use": SYNONYM_USE, "value": synonym}
            for synonym in entry["synonyms"]
        ]
    properties = [
        {
            "code": REQUIRED_CONTEXT_PROPERTY,
            "valueString": FHIR_CONTEXT_SEPARATOR.join([item["code"], item["label"], item["type"]]),
        }
        for item in entry["required_context"]
    ] + [
        {"code": PATIENT_INSTRUCTION_PROPERTY, "valueCode": code}
        for code in entry["patient_instructions"]
    ]
    if entry.get("specimen"):
        properties.append({"code": SPECIMEN_PROPERTY, "valueCode": entry["specimen"]})
    if properties:
        concept["property"] = properties
    return concept


# --- validation shared by every format -----------------------------------------------------


def _entries(drafts: list[_Draft], problems: _Problems, *, empty_hint: str) -> list[dict]:
    if not drafts and not problems.items:
        problems.add("", f"the catalogue is empty: {empty_hint}")
    seen: dict[str, str] = {}
    entries = []
    for draft in drafts:
        entry = _entry(draft, problems)
        code = draft.loinc.value
        if isinstance(code, str) and code in seen:
            problems.add(draft.loinc.where, f"duplicate LOINC code '{code}' (also at {seen[code]})")
        elif isinstance(code, str):
            seen[code] = draft.where
        entries.append(entry)
    return entries


def _entry(draft: _Draft, problems: _Problems) -> dict[str, Any]:
    for where, problem in draft.problems:
        problems.add(where, problem)
    for at, problem in [
        (draft.loinc, _loinc_problem(draft.loinc.value, "LOINC code")),
        (draft.label, _text_problem(draft.label.value, "label", MAX_LABEL)),
        (draft.specimen, _specimen_problem(draft.specimen)),
    ]:
        if problem:
            problems.add(at.where, problem)
    _check_items(draft.synonyms, _synonym_problem, _synonym_key, "synonym", problems)
    _check_items(draft.context, _context_problem, _context_key, "required context", problems)
    _check_items(
        draft.instructions, _instruction_problem, _instruction_key, "patient instruction", problems
    )
    return {
        "loinc": draft.loinc.value,
        "label": draft.label.value,
        "synonyms": [item.value for item in draft.synonyms],
        "required_context": [
            dict(item.value) for item in draft.context if isinstance(item.value, dict)
        ],
        "patient_instructions": [item.value for item in draft.instructions],
        **({"specimen": draft.specimen.value} if draft.specimen else {}),
    }


def _check_items(
    items: list[_At],
    problem_of: Callable[[Any], str | None],
    key_of: Callable[[Any], str],
    what: str,
    problems: _Problems,
) -> None:
    """Each item valid, and none twice (compared by key_of)."""
    seen: set[str] = set()
    for item in items:
        problem = problem_of(item.value)
        if problem is None and key_of(item.value) in seen:
            shown = item.value if isinstance(item.value, str) else key_of(item.value)
            problem = f"duplicate {what} '{shown}'"
        if problem:
            problems.add(item.where, problem)
        else:
            seen.add(key_of(item.value))


def _synonym_key(synonym: str) -> str:
    return synonym.casefold()


def _context_key(item: dict[str, str]) -> str:
    return item["code"]


def _instruction_key(code: str) -> str:
    return code


def _synonym_problem(value: Any) -> str | None:
    return _text_problem(value, "synonym", MAX_SYNONYM, reserved=LIST_SEPARATOR)


def _loinc_problem(code: Any, what: str) -> str | None:
    if not isinstance(code, str) or not code:
        return f"{what} is missing"
    if not _LOINC_SHAPE.match(code):
        return f"'{code}' is not a valid {what} (expected digits, '-' and a check digit: 2842-3)"
    if not is_loinc(code):
        return f"'{code}' is not a valid {what} (check digit)"
    return None


def _text_problem(value: Any, what: str, limit: int, *, reserved: str = "") -> str | None:
    if value is None or value == "":
        return f"{what} is missing"
    if not isinstance(value, str):
        return f"{what} must be a string"
    if value != value.strip():
        return f"{what} '{value}' has leading or trailing spaces"
    if len(value) > limit:
        return f"{what} is {len(value)} characters long (at most {limit})"
    if any(unicodedata.category(char) == "Cc" for char in value):
        return f"{what} '{value}' contains a control character (line break, tab...)"
    if reserved and reserved in value:
        return f"{what} '{value}' contains '{reserved}', which separates list items"
    return None


def _context_problem(item: Any) -> str | None:
    if not isinstance(item, dict) or set(item) != _CONTEXT_KEYS:
        return "a required context item must have exactly code, label and type"
    return (
        _loinc_problem(item["code"], "required context LOINC code")
        or _text_problem(
            item["label"], "required context label", MAX_LABEL, reserved=LIST_SEPARATOR
        )
        or _type_problem(item["type"])
    )


def _type_problem(kind: Any) -> str | None:
    if kind in CONTEXT_TYPES:
        return None
    return f"'{kind}' is not a required context type (expected one of {', '.join(CONTEXT_TYPES)})"


def _instruction_problem(code: Any) -> str | None:
    if isinstance(code, str) and code in PATIENT_INSTRUCTIONS:
        return None
    return (
        f"'{code}' is not a patient instruction code "
        f"(expected one of {', '.join(PATIENT_INSTRUCTIONS)})"
    )


def _specimen_problem(specimen: _At | None) -> str | None:
    if specimen is None or specimen_types.is_specimen_type(specimen.value):
        return None
    return (
        f"{specimen.value!r} is not a code of the HL7 specimen type value set "
        f"({specimen_types.value_set_name()}), e.g. SER, WB, PLAS, UR"
    )
