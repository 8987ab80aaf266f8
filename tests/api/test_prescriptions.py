import pytest
from sqlalchemy import func, select

from models import Event, Line, Prescription
from tests.factories import BLOOD_COUNT, OTHER_INS, PROLACTIN, VALID_INS, prescription_body


def create(http, party, body=None, **headers):
    return http.post(
        "/api/v1/prescriptions",
        json=body or prescription_body(),
        headers={**party.headers, **headers},
    )


def count_rows(session) -> tuple[int, int, int]:
    counts = tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (Prescription, Line, Event)
    )
    session.rollback()
    return counts


def test_create_answers_201_with_code_location_etag_and_the_prescription(http, prescriber):
    response = create(http, prescriber)
    assert response.status_code == 201
    body = response.json
    assert len(body["code"]) == 18
    assert response.headers["Location"] == f"/api/v1/prescriptions/{body['code']}"
    assert response.headers["ETag"] == '"v1"'
    assert body["status"] == "active" and body["version"] == 1
    assert body["prescriber"] == {"rpps": "10005688790", "name": "Dr Amélie Thomas"}
    assert body["patient"] == {"sex": "female", "birth_date": "1969-05-01", "ins_verified": True}
    assert [line["id"] for line in body["lines"]] == ["L1", "L2", "L3"]
    blood, prolactin, free = body["lines"]
    assert blood["label"] == "Numération formule sanguine"
    assert prolactin["context"] == [
        {"code": "8665-2", "label": "Date des dernières règles", "value": "2026-11-02"}
    ]
    assert prolactin["patient_instructions"][0]["code"] == "MED-1165"
    assert free == {**free, "loinc": None, "text": "Recherche de cryoglobulines"}
    assert all(
        line["status"] == "requested" and line["origin"] == "prescriber" for line in body["lines"]
    )
    assert body["warnings"] == []


def test_the_ins_is_never_stored_in_clear(http, session, prescriber):
    code = create(http, prescriber).json["code"]
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    assert stored.ins_pseudonym and VALID_INS not in stored.ins_pseudonym
    row_text = " ".join(str(value) for value in vars(stored).values())
    assert VALID_INS not in row_text


def test_prescriber_identity_comes_from_the_token_not_the_body(http, prescriber):
    body = prescription_body(prescriber={"rpps": "10003092342", "name": "Intrus"})
    assert create(http, prescriber, body).status_code == 422


def test_missing_clinical_context_is_a_warning_not_a_refusal(http, prescriber):
    body = prescription_body(lines=[{"loinc": PROLACTIN}])
    response = create(http, prescriber, body)
    assert response.status_code == 201
    [warning] = response.json["warnings"]
    assert warning["code"] == "missing_clinical_context"
    assert warning["line"] == "L1"
    assert "8665-2" in warning["detail"]


def test_same_exam_for_same_patient_still_open_is_a_possible_duplicate(
    http, prescriber, other_prescriber
):
    create(http, other_prescriber, prescription_body(lines=[{"loinc": BLOOD_COUNT}]))
    response = create(http, prescriber, prescription_body(lines=[{"loinc": BLOOD_COUNT}]))
    [warning] = response.json["warnings"]
    assert warning["code"] == "possible_duplicate" and warning["line"] == "L1"
    assert "Martin" not in str(warning) and "10003092342" not in str(warning)
    other_patient = prescription_body(lines=[{"loinc": BLOOD_COUNT}])
    other_patient["patient"]["ins"] = OTHER_INS
    assert create(http, prescriber, other_patient).json["warnings"] == []


def test_cancelled_prescriptions_are_not_duplicates(http, prescriber):
    first = create(http, prescriber, prescription_body(lines=[{"loinc": BLOOD_COUNT}])).json
    http.post(
        f"/api/v1/prescriptions/{first['code']}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    again = create(http, prescriber, prescription_body(lines=[{"loinc": BLOOD_COUNT}]))
    assert again.json["warnings"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["patient"].update(ins="269052A12345689"), "patient.ins"),
        (lambda b: b["patient"].update(ins="12345"), "patient.ins"),
        (lambda b: b["patient"].update(birth_date="1969-13-01"), "patient.birth_date"),
        (lambda b: b["patient"].update(birth_date="2999-01-01"), "patient.birth_date"),
        (lambda b: b["patient"].update(sex="f"), "patient.sex"),
        (lambda b: b["lines"][1].update(loinc="2842-4"), "lines[1].loinc"),
        (lambda b: b["lines"][1].update(loinc="99999-9"), "lines[1].loinc"),
        (lambda b: b["lines"][0].update(text="both"), "lines[0]"),
        (lambda b: b["lines"].append({}), "lines[3]"),
        (lambda b: b.update(lines=[]), "lines"),
        (lambda b: b.update(lines=[{"loinc": BLOOD_COUNT}] * 51), "lines"),
        (
            lambda b: b["lines"][1].update(patient_instructions=["MED-9999"]),
            "lines[1].patient_instructions[0]",
        ),
        (
            lambda b: b["lines"][1]["context"][0].update(value="02/11/2026"),
            "lines[1].context[0].value",
        ),
        (lambda b: b["lines"][0].update(renewals=13), "lines[0].renewals"),
        (lambda b: b["lines"][0].update(renewals=-1), "lines[0].renewals"),
        (lambda b: b["lines"][0].update(renewals="2"), "lines[0].renewals"),
        (lambda b: b["patient"].update(name="Dupont"), "patient.name"),
        (lambda b: b["patient"].update(address="1 rue de la Paix"), "patient.address"),
        (lambda b: b.update(patient_name="Dupont"), "patient_name"),
        (lambda b: b.update(result_return={"channels": ["phone"]}), "result_return.phone"),
        (lambda b: b.update(result_return={"channels": ["fax"]}), "result_return.channels[0]"),
        (
            lambda b: b.update(result_return={"copies_to": [{"rpps": "123"}]}),
            "result_return.copies_to[0].rpps",
        ),
        (lambda b: b.pop("patient"), "patient"),
    ],
)
def test_invalid_prescriptions_get_422_naming_the_field_and_store_nothing(
    http, session, prescriber, change, field
):
    body = prescription_body()
    change(body)
    before = count_rows(session)
    response = create(http, prescriber, body)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"], response.json
    assert response.json["type"].endswith("/validation")
    assert count_rows(session) == before


def test_unknown_loinc_message_points_to_a_free_text_line(http, prescriber):
    body = prescription_body(lines=[{"loinc": "99999-9"}])
    message = create(http, prescriber, body).json["errors"]["lines[0].loinc"]
    assert "free-text" in message


def test_identity_fields_are_refused_with_an_explanation(http, prescriber):
    body = prescription_body()
    body["patient"]["family_name"] = "Dupont"
    response = create(http, prescriber, body)
    assert "anonymous" in response.json["errors"]["patient.family_name"]


def test_a_prescription_without_ins_is_accepted_unverified(http, prescriber):
    body = prescription_body()
    del body["patient"]["ins"]
    response = create(http, prescriber, body)
    assert response.status_code == 201
    assert response.json["patient"]["ins_verified"] is False


def test_idempotent_retry_replays_the_original_response(http, session, prescriber):
    first = create(http, prescriber, None, **{"Idempotency-Key": "abc-1"})
    again = create(http, prescriber, None, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert session.scalar(select(func.count()).select_from(Prescription)) == 1


def test_idempotency_key_with_another_body_is_refused(http, session, prescriber):
    create(http, prescriber, None, **{"Idempotency-Key": "abc-2"})
    other = create(
        http,
        prescriber,
        prescription_body(clinical_context="autre"),
        **{"Idempotency-Key": "abc-2"},
    )
    assert other.status_code == 422
    assert other.json["code"] == "idempotency_key_reused"
    assert session.scalar(select(func.count()).select_from(Prescription)) == 1


def test_idempotency_keys_belong_to_their_client(http, prescriber, other_prescriber):
    mine = create(http, prescriber, None, **{"Idempotency-Key": "same"})
    theirs = create(http, other_prescriber, None, **{"Idempotency-Key": "same"})
    assert theirs.status_code == 201
    assert theirs.json["code"] != mine.json["code"]


def test_read_returns_the_prescription_with_its_etag(http, prescriber):
    created = create(http, prescriber).json
    response = http.get(f"/api/v1/prescriptions/{created['code']}", headers=prescriber.headers)
    assert response.status_code == 200
    assert response.headers["ETag"] == '"v1"'
    assert response.json["lines"] == created["lines"]


def test_codes_are_read_as_people_type_them(http, prescriber):
    code = create(http, prescriber).json["code"]
    typed = "-".join(code[i : i + 4] for i in range(0, 18, 4)).lower()
    response = http.get(f"/api/v1/prescriptions/{typed}/status", headers=prescriber.headers)
    assert response.status_code == 200 and response.json["code"] == code


def test_another_prescribers_code_is_exactly_like_an_unknown_one(
    http, prescriber, other_prescriber
):
    code = create(http, prescriber).json["code"]
    from epu.codes import generate_code

    for path in ("", "/status", "/history"):
        theirs = http.get(f"/api/v1/prescriptions/{code}{path}", headers=other_prescriber.headers)
        unknown = http.get(
            f"/api/v1/prescriptions/{generate_code()}{path}", headers=other_prescriber.headers
        )
        garbage = http.get(
            f"/api/v1/prescriptions/nonsense{path}", headers=other_prescriber.headers
        )
        assert theirs.status_code == unknown.status_code == garbage.status_code == 404
        assert theirs.json == unknown.json == garbage.json
    cancel = http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "x"},
        headers=other_prescriber.headers,
    )
    assert cancel.status_code == 404


def test_status_poll_answers_304_while_nothing_changed(http, prescriber):
    code = create(http, prescriber).json["code"]
    first = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert first.status_code == 200
    assert first.json == {
        "code": code,
        "status": "active",
        "version": 1,
        "modified": False,
        "execution_withheld": False,
        "updated_at": first.json["updated_at"],
        "laboratory": None,
        "lines": [
            {"id": "L1", "loinc": BLOOD_COUNT, "text": None, "status": "requested"},
            {"id": "L2", "loinc": PROLACTIN, "text": None, "status": "requested"},
            {
                "id": "L3",
                "loinc": None,
                "text": "Recherche de cryoglobulines",
                "status": "requested",
            },
        ],
        "proposals": {"pending": 0, "last": None},
    }
    etag = first.headers["ETag"]
    again = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": etag},
    )
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    http.post(
        f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
    )
    changed = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": etag},
    )
    assert changed.status_code == 200 and changed.json["status"] == "cancelled"


def test_list_own_prescriptions_by_update_time_with_a_stable_cursor(
    http, prescriber, other_prescriber
):
    codes = [create(http, prescriber).json["code"] for _ in range(5)]
    create(http, other_prescriber)
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = http.get(f"/api/v1/prescriptions{query}", headers=prescriber.headers).json
        seen += [item["code"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == codes
    http.post(
        f"/api/v1/prescriptions/{codes[0]}/cancel", json={"reason": "x"}, headers=prescriber.headers
    )
    cancelled = http.get("/api/v1/prescriptions?status=cancelled", headers=prescriber.headers)
    assert [item["code"] for item in cancelled.json["items"]] == [codes[0]]
    latest = http.get(
        f"/api/v1/prescriptions?updated_since={cancelled.json['items'][0]['updated_at']}",
        headers=prescriber.headers,
    )
    assert [item["code"] for item in latest.json["items"]] == [codes[0]]


@pytest.mark.parametrize(
    "query", ["status=done", "limit=0", "limit=1000", "cursor=%%%", "updated_since=yesterday"]
)
def test_bad_list_queries_are_422(http, prescriber, query):
    response = http.get(f"/api/v1/prescriptions?{query}", headers=prescriber.headers)
    assert response.status_code == 422
    assert response.json["errors"]


def test_cancel_while_active_and_repeat_harmlessly(http, session, prescriber):
    code = create(http, prescriber).json["code"]
    first = http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert first.status_code == 200 and first.json["status"] == "cancelled"
    again = http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert again.status_code == 200 and again.json["version"] == first.json["version"]
    events = session.scalars(select(Event.type).where(Event.type == "cancelled")).all()
    assert events == ["cancelled"]


def test_cancel_needs_a_reason(http, prescriber):
    code = create(http, prescriber).json["code"]
    response = http.post(
        f"/api/v1/prescriptions/{code}/cancel", json={}, headers=prescriber.headers
    )
    assert response.status_code == 422 and "reason" in response.json["errors"]


def test_cancel_is_refused_once_a_laboratory_holds_it(http, prescriber, lab):
    code = create(http, prescriber).json["code"]
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    response = http.post(
        f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
    )
    assert response.status_code == 409
    assert response.json["code"] == "not_cancellable"


def test_expiry_is_computed_on_read_even_before_the_command_runs(http, session, prescriber):
    from datetime import timedelta

    from models.base import utcnow

    code = create(http, prescriber).json["code"]
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    stored.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    status = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": '"v1"'},
    )
    assert status.status_code == 200 and status.json["status"] == "expired"
    cancel = http.post(
        f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
    )
    assert cancel.status_code == 409


def test_ep_bio_flags_and_the_urgency_reason_are_kept_and_shown(http, prescriber):
    lines = [
        {"loinc": BLOOD_COUNT, "urgent": True, "urgent_reason": "  anémie mal tolérée "},
        {"loinc": PROLACTIN, "work_accident": True, "not_reimbursable": True},
        {"text": "Dosage de la vitamine B8", "off_nomenclature": True},
    ]
    created = http.post(
        "/api/v1/prescriptions", json=prescription_body(lines=lines), headers=prescriber.headers
    )
    assert created.status_code == 201, created.json
    read = http.get(f"/api/v1/prescriptions/{created.json['code']}", headers=prescriber.headers)
    flags = [
        {key: line[key] for key in ("work_accident", "not_reimbursable", "off_nomenclature")}
        for line in read.json["lines"]
    ]
    assert flags == [
        {"work_accident": False, "not_reimbursable": False, "off_nomenclature": False},
        {"work_accident": True, "not_reimbursable": True, "off_nomenclature": False},
        {"work_accident": False, "not_reimbursable": False, "off_nomenclature": True},
    ]
    assert [line["urgent_reason"] for line in read.json["lines"]] == [
        "anémie mal tolérée",
        None,
        None,
    ]


@pytest.mark.parametrize(
    "line",
    [
        {"loinc": BLOOD_COUNT, "urgent": True},
        {"loinc": BLOOD_COUNT, "urgent": True, "urgent_reason": "   "},
        {"loinc": BLOOD_COUNT, "urgent_reason": "pas urgent du tout"},
    ],
)
def test_an_urgent_line_says_why_and_only_an_urgent_one(http, prescriber, line):
    body = prescription_body(lines=[{"loinc": PROLACTIN}, line])
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["lines[1].urgent_reason"]
