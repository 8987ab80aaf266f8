"""Valid request bodies and identifiers for tests."""

import copy

VALID_INS = "269052A12345688"  # Corsica (2A), key 88
OTHER_INS = "184037645108996"
PROLACTIN = "2842-3"
BLOOD_COUNT = "57022-6"
LAST_MENSES = "8665-2"


def ins_with_key(body13: str) -> str:
    digits = body13.replace("2A", "19").replace("2B", "18")
    return f"{body13}{97 - int(digits) % 97:02d}"


def prescription_body(**overrides) -> dict:
    body = {
        "patient": {"ins": VALID_INS, "sex": "female", "birth_date": "1969-05-01"},
        "clinical_context": "Asthénie depuis trois mois",
        "result_return": {"channels": ["mssante"]},
        "lines": [
            {"loinc": BLOOD_COUNT},
            {
                "loinc": PROLACTIN,
                "context": [{"code": LAST_MENSES, "value": "2026-11-02"}],
                "patient_instructions": ["MED-1165"],
            },
            {"text": "Recherche de cryoglobulines"},
        ],
    }
    body = copy.deepcopy(body)
    body.update(overrides)
    return body
