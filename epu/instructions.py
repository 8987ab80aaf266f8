"""Patient instructions for biology exams: CI-SIS value set JDV_Bio_instruction_patient_CISIS."""

VALUE_SET_OID = "1.2.250.1.213.1.1.5.691"
INSTRUCTION_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.322"

PATIENT_INSTRUCTIONS: dict[str, str] = {
    "MED-1160": "A jeûn",
    "MED-1161": "Prendre RDV au laboratoire",
    "MED-1162": "Il est préférable de faire cet examen dans le même laboratoire.",
    "MED-1163": "De préférence à jeûn ou à distance d'un repas",
    "MED-1164": ("Totalité des urines recueillies sur 24 heures. La collecte doit être complète."),
    "MED-1165": (
        "Prélèvement à réaliser au laboratoire. "
        "Le prélèvement chez la femme doit être effectué en début de phase folliculaire."
    ),
}
