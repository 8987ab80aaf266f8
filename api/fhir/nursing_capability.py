"""What /fhir/metadata declares of the patient lookup and the nurse's samplings."""

from typing import Any

from api.fhir import conformance
from api.fhir import systems as s
from api.fhir.specimens import CS_SAMPLING, EXT_CONTAINERS, SAMPLING_CODES
from epu import specimen_types

TASK_SEARCH_PARAMS = [
    {
        "name": "patient-identifier",
        "type": "token",
        "definition": f"{s.SEARCH_PARAMETER}/Task-patient-identifier",
        "documentation": "The patient lookup (laboratories and nurses): the INS as "
        f"`{s.INS_NIR}|<INS>` (or the test system `{s.INS_NIR_TEST}`), with `patient-birthdate`"
        " (YYYY-MM-DD), both required, only in the body of POST /fhir/Task/_search "
        "(application/x-www-form-urlencoded), never in a URL. Optional `presence`: carte_vitale,"
        " apcv, ins_datamatrix or declared (default). Answers the open prescriptions the caller "
        "may serve (active, or in progress held by the caller); a birth date that does not match "
        "answers an empty Bundle, as for a patient without prescriptions. Limited per client "
        "(EPU_LOOKUP_LIMIT per 10 minutes, then 429).",
    },
    {
        "name": "patient-birthdate",
        "type": "date",
        "definition": f"{s.SEARCH_PARAMETER}/Task-patient-birthdate",
        "documentation": "The patient's birth date (YYYY-MM-DD), with patient-identifier.",
    },
    {
        "name": "presence",
        "type": "token",
        "definition": f"{s.SEARCH_PARAMETER}/Task-presence",
        "documentation": "How the INS was read (patient lookup only).",
    },
]

RECORD_SAMPLING = (
    "A nurse records the specimens she collected (she scanned the prescription first with POST "
    "/api/v1/samplings/scan). Parameters: `collected` (valueDateTime with its offset), "
    "`specimen` (repeated; resource Specimen with `type` coded in "
    f"`{specimen_types.FHIR_SYSTEM}`, `request` = the ServiceRequests sampled, and the "
    f"extension `{EXT_CONTAINERS}` valueUnsignedInt 1-10), `not-collected` (repeated; parts "
    "`line` and `reason`, valueString), `comment` (valueString), `destination` "
    f"(valueIdentifier, system `{s.FINESS}`). The rules of the JSON API apply. Answers 201 "
    "with a collection Bundle of the Specimens."
)

SPECIMEN_DOCUMENTATION = (
    "One specimen of a nurse's sampling (id `<sampling id>-<n>`): `type` "
    f"(`{specimen_types.FHIR_SYSTEM}`, the ANS value set JDV_HL7_SpecimenType_CISIS), "
    "`collection.collectedDateTime`, `collection.collector` (the nurse, identifier system "
    f"`{s.RPPS}`; absent for the prescriber when the patient objected to sharing), `request` "
    f"(the ServiceRequests), `{EXT_CONTAINERS}` (tubes). ServiceRequest.specimen points to "
    "them; Task.businessStatus then carries a second coding "
    f"(`{CS_SAMPLING}`: specimen-collected or specimen-partially-collected). Readable by the "
    "prescriber, the laboratory that holds or held the prescription, and the nurse who "
    "recorded it."
)


def specimen() -> dict[str, Any]:
    return {
        "type": "Specimen",
        "documentation": SPECIMEN_DOCUMENTATION,
        "interaction": [{"code": "read"}],
    }


conformance.publish_operation(
    "Task-record-sampling",
    "record-sampling",
    "Task",
    RECORD_SAMPLING,
    [
        ("collected", "in", 1, "1", "dateTime", "When the specimens were collected.", ()),
        ("specimen", "in", 1, "*", "Specimen", "One collected specimen.", ()),
        (
            "not-collected",
            "in",
            0,
            "*",
            None,
            "A line not collected, with why.",
            (
                ("line", "in", 1, "1", "string", "The line id (L1, L2...).", ()),
                ("reason", "in", 1, "1", "string", "Why it was not collected.", ()),
            ),
        ),
        ("comment", "in", 0, "1", "string", "The nurse's comment.", ()),
        ("destination", "in", 0, "1", "Identifier", "The laboratory (FINESS).", ()),
        ("return", "out", 1, "1", "Bundle", "A collection Bundle of the Specimens.", ()),
    ],
    type_level=False,
    instance=True,
)


for _param in TASK_SEARCH_PARAMS:
    conformance.SEARCH_PARAMETERS[f"Task-{_param['name']}"] = {
        "code": _param["name"],
        "base": "Task",
        "type": _param["type"],
        "description": _param["documentation"],
    }

conformance.publish_extension(
    EXT_CONTAINERS, "unsignedInt", "Specimen", "How many tubes or containers (1 to 10)."
)
conformance.CODE_SYSTEMS[CS_SAMPLING] = (
    "Sampling outcome of a prescription (Task.businessStatus)",
    lambda: {code: display for code, display in SAMPLING_CODES.values()},
)
