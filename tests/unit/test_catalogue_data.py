"""The bundled starter catalogue epu/data/catalogue.json ("LOINC circuit de la biologie").

Pure data checks: no database, no app. The CI-SIS patient instruction value set and the
public NABM -> LOINC mapping are read from shared/ beside the repository; a test that needs
one of them is skipped, with the reason, when the file is not there.
"""

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_PATH = REPO_ROOT / "epu" / "data" / "catalogue.json"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
INSTRUCTIONS_PATH = SHARED_DATA / "ans" / "JDV_Bio_instruction_patient_CISIS.xml"
NABM_PATH = SHARED_DATA / "loinc" / "nabm2loinc_2020.csv"
SVS_NAMESPACE = "urn:ihe:iti:svs:2008"

ENTRY_KEYS = {"loinc", "label", "synonyms", "required_context", "patient_instructions"}
CONTEXT_KEYS = {"code", "label", "type"}
CONTEXT_TYPES = {"date", "string", "quantity", "boolean", "integer"}
LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")
MIN_ENTRIES = 150


def loinc_check_digit(number: str) -> int:
    """The LOINC mod-10 check digit of the digits before the hyphen, as LOINC documents it.

    1. Number the digits from the right. 2. Read the odd positions (1st, 3rd, ...) from
    left to right as a number and double it. 3. Write the even positions (2nd, 4th, ...),
    read from left to right, in front of that result. 4. Add up all the digits. 5. The
    check digit is what brings the sum to the next multiple of ten (0 if it already is one).
    """
    if not number.isdigit():
        raise ValueError(f"not a LOINC number: {number!r}")
    from_right = number[::-1]
    odd = from_right[0::2][::-1]
    even = from_right[1::2][::-1]
    combined = even + str(int(odd) * 2)
    total = sum(int(digit) for digit in combined)
    return (10 - total % 10) % 10


def is_valid_loinc(code: object) -> bool:
    if not isinstance(code, str) or not LOINC_SHAPE.match(code):
        return False
    number, check = code.split("-")
    return loinc_check_digit(number) == int(check)


@pytest.fixture(scope="module")
def catalogue() -> list[dict]:
    with CATALOGUE_PATH.open(encoding="utf-8") as file:
        data = json.load(file)
    assert isinstance(data, list)
    return data


@pytest.fixture(scope="module")
def by_code(catalogue) -> dict[str, dict]:
    return {entry["loinc"]: entry for entry in catalogue}


def all_codes(catalogue) -> list[str]:
    codes = []
    for entry in catalogue:
        codes.append(entry["loinc"])
        codes.extend(item["code"] for item in entry["required_context"])
    return codes


# ---------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    "code", ["2345-7", "2160-0", "57022-6", "2842-3", "8665-2", "718-7", "1558-6", "10535-3"]
)
def test_checker_accepts_known_good_codes(code):
    assert is_valid_loinc(code)


@pytest.mark.parametrize(
    "code",
    ["2345-8", "2160-1", "57022-7", "2842-4", "2843-3", "27022-6", "23457", "2345-77", "", "a-1"],
)
def test_checker_rejects_corrupted_or_malformed_codes(code):
    assert not is_valid_loinc(code)


def test_checker_follows_the_documented_example():
    # LOINC's own worked example: 12345 -> 531 * 2 = 1062 -> "42" + "1062" -> 15 -> 5.
    assert loinc_check_digit("12345") == 5


# ---------------------------------------------------------------------- file and shape


def test_file_is_utf8_with_real_accented_characters():
    text = CATALOGUE_PATH.read_bytes().decode("utf-8")
    assert "\\u" not in text, "non-ASCII characters must be written as themselves, not escaped"
    assert "Numération formule sanguine" in text


def test_has_enough_entries(catalogue):
    assert len(catalogue) >= MIN_ENTRIES


def test_entries_have_exactly_the_expected_keys(catalogue):
    for entry in catalogue:
        assert isinstance(entry, dict)
        assert ENTRY_KEYS <= set(entry) <= ENTRY_KEYS | {"specimen"}, entry.get("loinc")


def test_labels_and_synonyms_are_clean_strings(catalogue):
    for entry in catalogue:
        label = entry["label"]
        assert isinstance(label, str) and label and label == label.strip(), entry["loinc"]
        assert isinstance(entry["synonyms"], list), entry["loinc"]
        for synonym in entry["synonyms"]:
            assert isinstance(synonym, str), entry["loinc"]
            assert synonym and synonym == synonym.strip(), (entry["loinc"], synonym)
            assert len(synonym) <= 100 and "|" not in synonym, (entry["loinc"], synonym)


def test_every_code_is_a_valid_loinc(catalogue):
    bad = [code for code in all_codes(catalogue) if not is_valid_loinc(code)]
    assert bad == []


def test_required_context_items_are_well_formed(catalogue):
    for entry in catalogue:
        assert isinstance(entry["required_context"], list), entry["loinc"]
        for item in entry["required_context"]:
            assert isinstance(item, dict) and set(item) == CONTEXT_KEYS, entry["loinc"]
            assert is_valid_loinc(item["code"]), (entry["loinc"], item["code"])
            assert isinstance(item["label"], str) and item["label"].strip(), entry["loinc"]
            assert "|" not in item["label"], entry["loinc"]
            assert item["type"] in CONTEXT_TYPES, (entry["loinc"], item["type"])


# ---------------------------------------------------------------------- no duplicates


def test_no_duplicate_loinc_codes(catalogue):
    counts = Counter(entry["loinc"] for entry in catalogue)
    assert [code for code, count in counts.items() if count > 1] == []


def test_no_duplicate_synonyms_within_an_entry(catalogue):
    for entry in catalogue:
        folded = [synonym.casefold() for synonym in entry["synonyms"]]
        assert len(folded) == len(set(folded)), entry["loinc"]


def test_no_duplicate_context_or_instruction_within_an_entry(catalogue):
    for entry in catalogue:
        context_codes = [item["code"] for item in entry["required_context"]]
        assert len(context_codes) == len(set(context_codes)), entry["loinc"]
        instructions = entry["patient_instructions"]
        assert len(instructions) == len(set(instructions)), entry["loinc"]


# ---------------------------------------------------------------------- patient instructions


def value_set_codes() -> set[str]:
    if not INSTRUCTIONS_PATH.is_file():
        pytest.skip(f"CI-SIS value set not found at {INSTRUCTIONS_PATH}: cannot check the codes")
    root = ET.parse(INSTRUCTIONS_PATH).getroot()
    codes = {concept.get("code") for concept in root.iter(f"{{{SVS_NAMESPACE}}}Concept")}
    codes.discard(None)
    assert codes, f"no Concept in {INSTRUCTIONS_PATH}"
    return codes


def test_patient_instructions_come_from_the_cisis_value_set(catalogue):
    allowed = value_set_codes()
    for entry in catalogue:
        assert isinstance(entry["patient_instructions"], list), entry["loinc"]
        for code in entry["patient_instructions"]:
            assert code in allowed, (entry["loinc"], code)


def test_value_set_is_the_expected_one():
    assert {"MED-1160", "MED-1164", "MED-1165"} <= value_set_codes()


# ---------------------------------------------------------------------- entries the app relies on


def test_blood_count_entry(by_code):
    entry = by_code["57022-6"]
    assert entry["label"] == "Numération formule sanguine"
    assert {"NFS", "hémogramme"} <= set(entry["synonyms"])


def test_prolactin_entry(by_code):
    entry = by_code["2842-3"]
    assert entry["label"] == "Prolactine"
    assert "PRL" in entry["synonyms"]
    assert {"code": "8665-2", "label": "Date des dernières règles", "type": "date"} in entry[
        "required_context"
    ]


def test_some_typical_instructions(by_code):
    assert by_code["1558-6"]["patient_instructions"] == ["MED-1160"]
    assert "MED-1160" in by_code["24331-1"]["patient_instructions"]
    assert "MED-1165" in by_code["15067-2"]["patient_instructions"]
    assert "MED-1164" in by_code["2889-4"]["patient_instructions"]
    assert "MED-1162" in by_code["2857-1"]["patient_instructions"]


# ---------------------------------------------------------------------- public NABM mapping


def test_most_codes_appear_in_the_nabm_mapping(catalogue, capsys):
    if not NABM_PATH.is_file():
        pytest.skip(f"NABM -> LOINC mapping not found at {NABM_PATH}: coverage not measured")
    with NABM_PATH.open(encoding="utf-8", newline="") as file:
        mapped = {row["loinc_concept_code"] for row in csv.DictReader(file)}
    codes = [entry["loinc"] for entry in catalogue]
    found = [code for code in codes if code in mapped]
    with capsys.disabled():
        print(f"\ncatalogue codes found in the NABM -> LOINC mapping: {len(found)}/{len(codes)}")
    assert len(found) * 2 >= len(codes), f"only {len(found)} of {len(codes)} codes are mapped"
