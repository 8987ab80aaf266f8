"""Catalogue files: CSV and FHIR (CodeSystem, ValueSet) reading, CodeSystem writing, errors."""

import json
from pathlib import Path

import pytest

from epu.catalogue_files import (
    CODESYSTEM_URL,
    CatalogueFileError,
    parse_catalogue,
    to_fhir_codesystem,
)
from epu.instructions import INSTRUCTION_SYSTEM, PATIENT_INSTRUCTIONS

BUNDLED = Path(__file__).resolve().parents[2] / "epu" / "data" / "catalogue.json"

PROLACTINE = {
    "loinc": "2842-3",
    "label": "Prolactine",
    "synonyms": ["PRL", "Prolactinémie"],
    "required_context": [{"code": "8665-2", "label": "Date des dernières règles", "type": "date"}],
    "patient_instructions": ["MED-1165"],
}
HEMOGLOBINE = {
    "loinc": "718-7",
    "label": "Hémoglobine",
    "synonyms": [],
    "required_context": [],
    "patient_instructions": [],
}
GLYCEMIE = {
    "loinc": "2345-7",
    "label": "Glycémie à jeûn",
    "synonyms": ["Glucose"],
    "required_context": [
        {"code": "8665-2", "label": "Date : dernières règles", "type": "date"},
        {"code": "29463-7", "label": "Poids", "type": "quantity"},
    ],
    "patient_instructions": ["MED-1160", "MED-1161"],
}
ENTRIES = [PROLACTINE, HEMOGLOBINE, GLYCEMIE]


def problems(data: bytes | str, filename: str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(CatalogueFileError) as caught:
        parse_catalogue(raw, filename=filename)
    return caught.value.problems


def codesystem(*concepts: dict) -> bytes:
    resource = {"resourceType": "CodeSystem", "status": "active", "content": "fragment"}
    return json.dumps({**resource, "concept": list(concepts)}).encode()


# --- patient instructions ------------------------------------------------------------------


def test_patient_instructions_are_the_cisis_value_set():
    assert INSTRUCTION_SYSTEM == "urn:oid:1.2.250.1.213.1.1.4.322"
    assert list(PATIENT_INSTRUCTIONS) == [f"MED-116{digit}" for digit in range(6)]
    assert PATIENT_INSTRUCTIONS["MED-1160"] == "A jeûn"


# --- FHIR CodeSystem -----------------------------------------------------------------------


def test_codesystem_round_trip_is_exact():
    resource = to_fhir_codesystem(ENTRIES, version="2025.1", date="2025-06-01")
    data = json.dumps(resource, ensure_ascii=False).encode()
    assert parse_catalogue(data, filename="x.json") == ENTRIES


def test_codesystem_shape():
    resource = to_fhir_codesystem([PROLACTINE], version="2025.1", date="2025-06-01")
    assert resource["resourceType"] == "CodeSystem"
    assert resource["url"] == CODESYSTEM_URL
    assert resource["name"] == "LoincCircuitBiologie"
    assert resource["title"] == "LOINC circuit de la biologie"
    assert (resource["status"], resource["content"], resource["language"]) == (
        "active",
        "fragment",
        "fr-FR",
    )
    assert (resource["version"], resource["date"]) == ("2025.1", "2025-06-01")
    assert {(p["code"], p["type"]) for p in resource["property"]} == {
        ("requiredContext", "string"),
        ("patientInstruction", "code"),
        ("specimen", "code"),
    }
    concept = resource["concept"][0]
    assert concept["code"] == "2842-3"
    assert concept["display"] == "Prolactine"
    assert concept["designation"][1] == {
        "language": "fr-FR",
        "use": {
            "system": "http://snomed.info/sct",
            "code": "900000000000013009",
            "display": "Synonym",
        },
        "value": "Prolactinémie",
    }
    assert concept["property"] == [
        {"code": "requiredContext", "valueString": "8665-2|Date des dernières règles|date"},
        {"code": "patientInstruction", "valueCode": "MED-1165"},
    ]


def test_codesystem_french_designation_is_the_label_and_nested_concepts_are_flattened():
    data = codesystem(
        {
            "code": "2842-3",
            "display": "Prolactin [Mass/volume] in Serum or Plasma",
            "designation": [
                {"language": "en", "value": "Prolactin"},
                {"language": "fr-FR", "use": {"code": "synonym"}, "value": "PRL"},
                {"language": "fr", "value": "Prolactine"},
            ],
            "concept": [{"code": "718-7", "display": "Hémoglobine"}],
        },
        {"code": "2345-7", "display": "Glucose"},
    )
    entries = parse_catalogue(data, filename="cs.json")
    assert [(e["loinc"], e["label"], e["synonyms"]) for e in entries] == [
        ("2842-3", "Prolactine", ["PRL"]),
        ("718-7", "Hémoglobine", []),
        ("2345-7", "Glucose", []),
    ]


def test_codesystem_that_is_not_valid_fhir_names_the_path():
    data = codesystem({"code": "2842-3", "display": "Prolactine", "colour": "blue"})
    assert problems(data, "cs.json") == ["concept[0].colour: Extra inputs are not permitted"]


def test_to_fhir_codesystem_refuses_invalid_entries():
    with pytest.raises(CatalogueFileError) as caught:
        to_fhir_codesystem(
            [{**HEMOGLOBINE, "label": " Hémoglobine"}, {**PROLACTINE, "loinc": "2842-4"}],
            version="1",
            date="2025-06-01",
        )
    assert caught.value.problems == [
        "entries[0].label: label ' Hémoglobine' has leading or trailing spaces",
        "entries[1].loinc: '2842-4' is not a valid LOINC code (check digit)",
    ]


def test_to_fhir_codesystem_refuses_an_invalid_date():
    with pytest.raises(CatalogueFileError) as caught:
        to_fhir_codesystem(ENTRIES, version="1", date="June 2025")
    assert caught.value.problems[0].startswith("date: ")


# --- FHIR ValueSet -------------------------------------------------------------------------


def test_valueset_compose_include_with_designations_and_extensions():
    base = "https://epu.esante.gouv.fr/fhir/StructureDefinition/"
    resource = {
        "resourceType": "ValueSet",
        "status": "active",
        "language": "fr-FR",
        "compose": {
            "include": [
                {"system": "http://snomed.info/sct", "concept": [{"code": "123"}]},
                {
                    "system": "http://loinc.org",
                    "concept": [
                        {
                            "code": "2842-3",
                            "display": "Prolactin",
                            "designation": [
                                {"language": "fr-FR", "value": "Prolactine"},
                                {
                                    "language": "fr-FR",
                                    "use": {
                                        "system": "http://snomed.info/sct",
                                        "code": "900000000000013009",
                                    },
                                    "value": "PRL",
                                },
                                {"use": {"code": "synonym"}, "value": "Prolactinémie"},
                                {"language": "en", "use": {"code": "synonym"}, "value": "PRL2"},
                            ],
                            "extension": [
                                {
                                    "url": base + "required-context",
                                    "valueString": "8665-2|Date des dernières règles|date",
                                },
                                {"url": base + "patient-instruction", "valueCode": "MED-1165"},
                            ],
                        },
                        {"code": "718-7", "display": "Hémoglobine"},
                    ],
                },
            ]
        },
    }
    entries = parse_catalogue(json.dumps(resource).encode(), filename="vs.json")
    assert entries == [PROLACTINE, HEMOGLOBINE]


def test_valueset_expansion_contains():
    resource = {
        "resourceType": "ValueSet",
        "status": "active",
        "expansion": {
            "timestamp": "2025-06-01T00:00:00+02:00",
            "contains": [
                {"system": "http://loinc.org", "code": "718-7", "display": "Hémoglobine"},
                {"system": "http://snomed.info/sct", "code": "123", "display": "Autre"},
            ],
        },
    }
    entries = parse_catalogue(json.dumps(resource).encode(), filename="vs.json")
    assert entries == [HEMOGLOBINE]


def test_valueset_without_loinc_concept_is_an_empty_catalogue():
    resource = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "1"}]}]},
    }
    [message] = problems(json.dumps(resource), "vs.json")
    assert message.startswith("the catalogue is empty")


def test_valueset_errors_name_the_include_and_concept():
    resource = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "http://loinc.org",
                    "concept": [
                        {"code": "718-7", "display": "Hémoglobine"},
                        {"code": "2842-3", "display": "Prolactine"},
                        {"code": "2345-7", "display": "Glycémie"},
                        {
                            "code": "1-8",
                            "display": "x",
                            "designation": [
                                {"language": "fr", "use": {"code": "synonym"}, "value": "a|b"}
                            ],
                        },
                    ],
                }
            ]
        },
    }
    assert problems(json.dumps(resource), "vs.json") == [
        "compose.include[0].concept[3].designation[0].value: "
        "synonym 'a|b' contains '|', which separates list items"
    ]


# --- CSV -----------------------------------------------------------------------------------

CSV_COMMA = (
    "loinc,label,synonyms,required_context,patient_instructions\n"
    "2842-3,Prolactine,PRL|Prolactinémie,8665-2:Date des dernières règles:date,MED-1165\n"
    "718-7,Hémoglobine,,,\n"
    '2345-7,Glycémie à jeûn,Glucose,"8665-2:Date : dernières règles:date|29463-7:Poids:quantity",'
    "MED-1160|MED-1161\n"
)
CSV_SEMICOLON = (
    "loinc;label;synonyms;required_context;patient_instructions\r\n"
    "2842-3;Prolactine;PRL|Prolactinémie;8665-2:Date des dernières règles:date;MED-1165\r\n"
    "718-7;Hémoglobine;;;\r\n"
    "\r\n"
    "2345-7;Glycémie à jeûn;Glucose;8665-2:Date : dernières règles:date|29463-7:Poids:quantity;"
    "MED-1160|MED-1161\r\n"
)


def test_csv_with_commas():
    assert parse_catalogue(CSV_COMMA.encode(), filename="catalogue.csv") == ENTRIES


def test_csv_with_semicolons_and_bom():
    data = "\ufeff".encode() + CSV_SEMICOLON.encode()
    assert parse_catalogue(data, filename="CATALOGUE.CSV") == ENTRIES


def test_csv_optional_columns_may_be_missing_and_cells_are_trimmed():
    data = "Label ; LOINC\n Hémoglobine ; 718-7 \n"
    assert parse_catalogue(data.encode(), filename="c.csv") == [HEMOGLOBINE]


def test_csv_round_trips_through_fhir():
    entries = parse_catalogue(CSV_COMMA.encode(), filename="c.csv")
    resource = to_fhir_codesystem(entries, version="1", date="2025-06-01")
    assert parse_catalogue(json.dumps(resource).encode(), filename="c.json") == entries


def test_csv_bad_check_digit_names_the_line_and_column():
    data = CSV_COMMA + "2842-4,Autre,,,\n"
    assert problems(data, "c.csv") == [
        "line 5, column 'loinc': '2842-4' is not a valid LOINC code (check digit)"
    ]


def test_csv_line_numbers_count_lines_of_quoted_cells():
    data = 'loinc,label\n718-7,"Hémo\nglobine"\nabc,x\n'
    assert problems(data, "c.csv") == [
        "line 2, column 'label': label 'Hémo\nglobine' contains a control character "
        "(line break, tab...)",
        "line 4, column 'loinc': 'abc' is not a valid LOINC code "
        "(expected digits, '-' and a check digit: 2842-3)",
    ]


def test_csv_unknown_instruction_code():
    data = "loinc,label,patient_instructions\n718-7,Hémoglobine,MED-1160|MED-1170\n"
    [message] = problems(data, "c.csv")
    assert message.startswith(
        "line 2, column 'patient_instructions': 'MED-1170' is not a patient instruction code"
    )


def test_csv_bad_context_type_and_syntax():
    data = (
        "loinc;label;required_context\n"
        "718-7;Hémoglobine;8665-2:Date des dernières règles:datetime\n"
        "2842-3;Prolactine;8665-2|Date des dernières règles|date\n"
    )
    assert problems(data, "c.csv") == [
        "line 2, column 'required_context': 'datetime' is not a required context type "
        "(expected one of boolean, date, integer, quantity, string)",
        "line 3, column 'required_context': '8665-2' is not a required context item: "
        "expected code:label:type, e.g. '8665-2:Date des dernières règles:date'",
        "line 3, column 'required_context': 'Date des dernières règles' is not a required "
        "context item: expected code:label:type, e.g. '8665-2:Date des dernières règles:date'",
        "line 3, column 'required_context': 'date' is not a required context item: "
        "expected code:label:type, e.g. '8665-2:Date des dernières règles:date'",
    ]


def test_csv_duplicate_code_names_both_lines():
    data = "loinc,label\n718-7,Hémoglobine\n2842-3,Prolactine\n718-7,Hb\n"
    assert problems(data, "c.csv") == [
        "line 4, column 'loinc': duplicate LOINC code '718-7' (also at line 2)"
    ]


def test_csv_duplicate_synonym_is_case_insensitive():
    data = "loinc,label,synonyms\n718-7,Hémoglobine,Hb|HB\n"
    assert problems(data, "c.csv") == ["line 2, column 'synonyms': duplicate synonym 'HB'"]


def test_csv_missing_label_column():
    assert problems("loinc,synonyms\n718-7,Hb\n", "c.csv") == [
        "line 1: missing required column(s) 'label': the first line must be a header"
    ]


def test_csv_unknown_column_and_too_many_values():
    assert problems("loinc,label,libelle\n", "c.csv")[0].startswith(
        "line 1: unknown column 'libelle'"
    )
    assert problems("loinc,label\n718-7,Hémoglobine,x\n", "c.csv") == [
        "line 2: 3 values but the header has 2 columns"
    ]


def test_csv_label_too_long():
    data = f"loinc,label\n718-7,{'x' * 301}\n"
    assert problems(data, "c.csv") == [
        "line 2, column 'label': label is 301 characters long (at most 300)"
    ]


def test_problems_are_all_collected_up_to_a_limit():
    data = "loinc,label\n" + "".join(f"A{n}-0,x\n" for n in range(1, 80))
    found = problems(data, "c.csv")
    assert len(found) == 51
    assert found[0].startswith("line 2, column 'loinc': 'A1-0'")
    assert found[-1] == "... and 29 more problems"


# --- files refused as a whole --------------------------------------------------------------


def test_invalid_json_names_line_and_column():
    data = '{\n  "resourceType": "CodeSystem",\n  "concept": [\n}\n'
    [message] = problems(data, "cs.json")
    assert message.startswith("invalid JSON at line 4, column 1:")


def test_patient_resource_is_refused():
    assert problems('{"resourceType": "Patient"}', "p.json") == [
        'resourceType "Patient" is not supported: expected a FHIR CodeSystem or ValueSet'
    ]


def test_unknown_file_type_is_refused():
    [message] = problems("loinc\tlabel\n", "catalogue.xlsx")
    assert "unsupported file" in message


def test_empty_catalogue_is_refused():
    assert problems("loinc,label\n", "c.csv") == [
        "the catalogue is empty: no line after the header"
    ]
    assert problems(codesystem(), "cs.json") == [
        "the catalogue is empty: the CodeSystem has no concept"
    ]
    assert problems(b"", "c.csv") == ["'c.csv' is empty"]


def test_invalid_utf8_names_the_line():
    data = "loinc;label\n718-7;Hémoglobine\n".encode("latin-1")
    assert problems(data, "c.csv") == [
        "line 2, column 8: invalid UTF-8 (byte 0xe9); save the file as UTF-8"
    ]


def test_codesystem_property_errors_name_the_property():
    data = codesystem(
        {
            "code": "2842-3",
            "display": "Prolactine",
            "property": [
                {"code": "requiredContext", "valueString": "8665-3|Date des dernières règles|date"},
                {"code": "patientInstruction", "valueCode": "MED-9999"},
                {"code": "patientInstruction", "valueString": "MED-1160"},
            ],
        },
        {"code": "2842-3", "display": "Prolactine bis"},
    )
    found = problems(data, "cs.json")
    assert len(found) == 4
    assert (
        "concept[0].property[0].valueString: "
        "'8665-3' is not a valid required context LOINC code (check digit)"
    ) in found
    assert any(p.startswith("concept[0].property[1].valueCode: 'MED-9999' is not") for p in found)
    assert "concept[0].property[2]: a patient instruction needs a valueCode" in found
    assert found[3] == "concept[1].code: duplicate LOINC code '2842-3' (also at concept[0])"


# --- the bundled starter catalogue ---------------------------------------------------------


@pytest.mark.skipif(not BUNDLED.exists(), reason="epu/data/catalogue.json is not written yet")
def test_bundled_catalogue_round_trips():
    entries = json.loads(BUNDLED.read_text(encoding="utf-8"))
    resource = to_fhir_codesystem(entries, version="bundled", date="2025-06-01")
    back = parse_catalogue(json.dumps(resource, ensure_ascii=False).encode(), filename="b.json")
    defaults = {"synonyms": [], "required_context": [], "patient_instructions": []}
    assert back == [{**defaults, **entry} for entry in entries]
