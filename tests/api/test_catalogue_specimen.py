"""The catalogue's `specimen`: read and written in CSV and FHIR, checked against the value set,
and the starter catalogue's values checked against what the LOINC codes name."""

import csv
import json
import re

import pytest

from epu.catalogue import BUNDLED
from epu.catalogue_files import CatalogueFileError, parse_catalogue, to_fhir_codesystem
from tests.conftest import shared_file

CSV_FILE = (
    "loinc,label,synonyms,required_context,patient_instructions,specimen\n"
    "2160-0,Créatinine,,,,SER\n"
    "57022-6,Numération formule sanguine,NFS,,,WB\n"
    "718-7,Hémoglobine,,,,\n"
)
# The System axis of a LOINC name -> the usual HL7 specimen type (JDV_HL7_SpecimenType_CISIS).
SYSTEMS = {
    "Serum or Plasma": {"SER", "PLAS"},
    "Serum": {"SER"},
    "Plasma": {"PLAS"},
    "Platelet poor plasma": {"PPP", "PLAS"},
    "Blood": {"WB", "BLD"},
    "Urine": {"UR"},
    "24 hour Urine": {"UR"},
    "Stool": {"STL"},
    "Red Blood Cells": {"RBC"},
    "Cervix": {"CVX"},
}


def test_csv_reads_the_specimen_column_and_fhir_round_trips_it():
    entries = parse_catalogue(CSV_FILE.encode(), filename="catalogue.csv")

    assert [entry.get("specimen") for entry in entries] == ["SER", "WB", None]
    exported = to_fhir_codesystem(entries, version="2", date="2026-12-01")
    again = parse_catalogue(json.dumps(exported).encode(), filename="catalogue.json")
    assert [entry.get("specimen") for entry in again] == ["SER", "WB", None]
    assert {"code": "specimen", "valueCode": "SER"} in exported["concept"][0]["property"]


def test_a_specimen_outside_the_value_set_is_refused_where_it_is():
    bad = CSV_FILE.replace(",SER\n", ",SERUM\n")
    with pytest.raises(CatalogueFileError) as refused:
        parse_catalogue(bad.encode(), filename="catalogue.csv")
    assert refused.value.problems == [
        "line 2, column 'specimen': 'SERUM' is not a code of the HL7 specimen type value set "
        "(JDV_HL7_SpecimenType_CISIS), e.g. SER, WB, PLAS, UR"
    ]


def test_the_api_gives_the_specimen_of_an_entry(http, prescriber):
    response = http.get("/api/v1/catalogue/2160-0", headers=prescriber.headers)
    assert response.status_code == 200 and response.json["specimen"] == "SER"


def test_the_starter_catalogues_specimens_are_what_their_loinc_codes_name():
    names = {}
    with shared_file("data", "loinc", "nabm2loinc_2020.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            names[row["loinc_concept_code"]] = row["loinc_concept_name"]
    pattern = re.compile(r" (?:in|on) (" + "|".join(sorted(SYSTEMS, key=len, reverse=True)) + ")")
    entries = json.loads(BUNDLED.read_text(encoding="utf-8"))
    filled = [entry for entry in entries if entry.get("specimen")]

    assert len(filled) >= 150, "the usual specimen is standard for most entries"
    for entry in filled:
        match = pattern.search(names.get(entry["loinc"], ""))
        assert match, f"{entry['loinc']}: its specimen is not named by the LOINC mapping"
        assert entry["specimen"] in SYSTEMS[match[1]], (entry["loinc"], names[entry["loinc"]])
    serum = next(entry for entry in entries if entry["loinc"] == "2160-0")
    assert serum["specimen"] == "SER"
