"""The bundled specimen type codes are exactly those of the ANS value set file."""

import xml.etree.ElementTree as ET

from epu import specimen_types
from tests.conftest import shared_file

SVS = {"svs": "urn:ihe:iti:svs:2008"}


def test_the_bundled_codes_and_labels_are_the_ans_value_sets_current_ones():
    tree = ET.parse(shared_file("data", "ans", "JDV_HL7_SpecimenType_CISIS.xml"))
    value_set = tree.find(".//svs:ValueSet", SVS)
    current = {
        concept.get("code"): concept.get("displayName")
        for concept in value_set.iterfind(".//svs:Concept", SVS)
        if not concept.get("dateFin")
    }

    assert specimen_types.labels() == current
    assert specimen_types.value_set_name() == value_set.get("displayName")


def test_usual_home_sampling_types_are_known_and_others_are_not():
    for code in ("SER", "BLD", "PLAS", "WB", "UR", "STL", "THRT"):
        assert specimen_types.is_specimen_type(code), code
    for code in ("ser", "SERUM", "", "2842-3"):
        assert not specimen_types.is_specimen_type(code), code
    assert specimen_types.label("SER") == "Sérum"
