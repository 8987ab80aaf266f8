"""Identifier systems, code systems and extension URLs of the FHIR interface."""

from epu import codes, instructions

REQUISITION_SYSTEM = codes.OID  # urn:oid:1.2.250.1.215.500.1.1
INSTRUCTION_SYSTEM = instructions.INSTRUCTION_SYSTEM

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"

LOINC = "http://loinc.org"
FR_CORE_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
FR_CORE_IDENTIFIER_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"  # FR Core Patient INS: INS-NIR
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"  # a temporary identifier: not a qualified INS
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIR_DEMO = "urn:oid:1.2.250.1.213.1.4.11"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SNOMED = "http://snomed.info/sct"
# The ANS FrActeBiologiePrescrit profile codes an exam outside the value set this way, the
# exam itself in code.text.
FREE_TEXT_LOINC = "19146-0"
FREE_TEXT_DISPLAY = (
    "Test de laboratoire (Identifiant+nom):Identifiant:Ponctuel:Test de référence:Résultat nominal:"
)
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

_BASE = "https://epu.esante.gouv.fr/fhir"
STRUCTURE = f"{_BASE}/StructureDefinition"
CODE_SYSTEM = f"{_BASE}/CodeSystem"
VALUE_SET = f"{_BASE}/ValueSet"
OPERATION = f"{_BASE}/OperationDefinition"
SEARCH_PARAMETER = f"{_BASE}/SearchParameter"

# ServiceRequest extensions
EXT_ALD = f"{STRUCTURE}/ald"  # valueBoolean: exam for an "affection de longue durée"
EXT_PREVENTION = f"{STRUCTURE}/prevention"  # valueBoolean: prevention exam
EXT_WORK_ACCIDENT = f"{STRUCTURE}/work-accident"  # valueBoolean: AT/MP (eP-BIO)
EXT_NOT_REIMBURSABLE = f"{STRUCTURE}/not-reimbursable"  # valueBoolean (eP-BIO)
EXT_OFF_NOMENCLATURE = f"{STRUCTURE}/off-nomenclature"  # valueBoolean: hors NABM (eP-BIO)
EXT_URGENT_REASON = f"{STRUCTURE}/urgent-reason"  # valueString: why priority is urgent
EXT_RENEWALS = f"{STRUCTURE}/renewals"  # valueUnsignedInt: renewals allowed (0-12)
EXT_RENEWALS_LEFT = f"{STRUCTURE}/renewals-left"  # valueUnsignedInt, read only
EXT_PATIENT_INSTRUCTION = f"{STRUCTURE}/patient-instruction"  # valueCode MED-1160..MED-1165
EXT_SAMPLING = f"{STRUCTURE}/sampling-instructions"  # valueString
EXT_ORIGIN = f"{STRUCTURE}/line-origin"  # valueCode prescriber | laboratory, read only
EXT_LINE_STATUS = f"{STRUCTURE}/line-status"  # valueCode: the EPU line status, read only
EXT_LINE_REASON = f"{STRUCTURE}/line-status-reason"  # valueString, read only
EXT_RESULT_RETURN = f"{STRUCTURE}/result-return"  # complex: channel*, phone, copy-to*
# Task extensions (read only)
EXT_MODIFIED = f"{STRUCTURE}/modified-by-laboratory"  # valueBoolean
EXT_EXECUTION_WITHHELD = f"{STRUCTURE}/execution-withheld"  # valueBoolean

CS_PRESCRIPTION_STATUS = f"{CODE_SYSTEM}/prescription-status"
CS_EVENT_TYPE = f"{CODE_SYSTEM}/event-type"
CS_ISSUE = f"{CODE_SYSTEM}/issue"  # the same slugs as the JSON API's problem codes
CS_LINE_ORIGIN = f"{CODE_SYSTEM}/line-origin"
CS_LINE_STATUS = f"{CODE_SYSTEM}/line-status"
CS_RESULT_CHANNEL = f"{CODE_SYSTEM}/result-channel"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
