"""The HL7 specimen type value set used in France (ANS JDV_HL7_SpecimenType_CISIS).

epu/data/specimen_types.json holds its codes and French labels, derived from the ANS file
(tests/unit/test_specimen_types.py checks it against ../shared/data/ans when present).
"""

import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data" / "specimen_types.json"
# HL7 v2 table 0487 (specimen type), as FHIR names it.
FHIR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0487"


@cache
def _value_set() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def labels() -> dict[str, str]:
    """Code -> French label, for every code of the value set."""
    return _value_set()["concepts"]


def is_specimen_type(code: str) -> bool:
    return code in labels()


def label(code: str) -> str | None:
    return labels().get(code)


def value_set_name() -> str:
    return _value_set()["value_set"]
