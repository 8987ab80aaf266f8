"""The patient without the paper: POST /api/v1/patient-lookups by INS and birth date."""

import dataclasses
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from api.limits import Limits
from models import Event, Prescription
from models.base import utcnow
from tests.factories import OTHER_INS, VALID_INS, prescription_body

BIRTH_DATE = "1969-05-01"
LOOKUP = "/api/v1/patient-lookups"


def create(http, prescriber, ins=VALID_INS, birth_date=BIRTH_DATE, **overrides) -> str:
    body = prescription_body(**overrides)
    body["patient"].update(ins=ins, birth_date=birth_date)
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 201, response.json
    return response.json["code"]


def look_up(http, party, ins=VALID_INS, birth_date=BIRTH_DATE, presence="carte_vitale"):
    return http.post(
        LOOKUP,
        json={"ins": ins, "birth_date": birth_date, "presence": presence},
        headers=party.headers,
    )


def codes(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [item["code"] for item in response.json["items"]]


def test_lists_the_patients_open_prescriptions_with_only_what_is_needed_to_choose(
    http, prescriber, lab
):
    first = create(http, prescriber)
    troponin = {"text": "Troponine", "urgent": True, "urgent_reason": "douleur thoracique"}
    urgent = create(http, prescriber, lines=[troponin])
    create(http, prescriber, ins=OTHER_INS)

    response = look_up(http, lab)

    assert sorted(codes(response)) == sorted([first, urgent])
    by_code = {item["code"]: item for item in response.json["items"]}
    assert set(by_code[first]) == {
        "code",
        "status",
        "created_at",
        "expires_at",
        "prescriber",
        "lines",
        "urgent",
        "held_by_caller",
    }
    assert by_code[first]["prescriber"] == {"rpps": "10005688790", "name": "Dr Amélie Thomas"}
    assert (by_code[first]["lines"], by_code[first]["urgent"]) == (3, False)
    assert (by_code[urgent]["lines"], by_code[urgent]["urgent"]) == (1, True)
    assert by_code[first]["status"] == "active" and not by_code[first]["held_by_caller"]


def test_the_ins_may_be_typed_with_spaces_and_lower_case(http, prescriber, lab):
    code = create(http, prescriber)
    spaced = "2 69 05 2a 123 456 88"
    assert codes(look_up(http, lab, ins=spaced)) == [code]


def test_a_birth_date_mismatch_answers_exactly_like_a_patient_with_no_prescription(
    http, prescriber, lab
):
    create(http, prescriber)

    mismatch = look_up(http, lab, birth_date="1969-05-02")
    nobody = look_up(http, lab, ins=OTHER_INS)

    assert (mismatch.status_code, nobody.status_code) == (200, 200)
    assert mismatch.json == {"items": []}
    assert mismatch.get_data() == nobody.get_data()
    assert dict(mismatch.headers) == dict(nobody.headers)


def test_a_prescription_held_by_another_laboratory_is_not_listed(http, prescriber, lab, other_lab):
    held_elsewhere = create(http, prescriber)
    held_here = create(http, prescriber)
    free = create(http, prescriber)
    for party, code in ((other_lab, held_elsewhere), (lab, held_here)):
        taken = http.post("/api/v1/scans", json={"code": code}, headers=party.headers)
        assert taken.status_code == 200

    items = look_up(http, lab).json["items"]

    assert sorted(item["code"] for item in items) == sorted([held_here, free])
    held = next(item for item in items if item["code"] == held_here)
    assert (held["status"], held["held_by_caller"]) == ("in_progress", True)
    assert sorted(codes(look_up(http, other_lab))) == sorted([held_elsewhere, free])


def test_closed_prescriptions_are_not_listed(http, session, prescriber, lab):
    cancelled = create(http, prescriber)
    http.post(
        f"/api/v1/prescriptions/{cancelled}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    past_validity = create(http, prescriber)
    stored = session.scalar(select(Prescription).where(Prescription.code == past_validity))
    stored.expires_at = utcnow() - timedelta(minutes=1)
    session.commit()

    assert codes(look_up(http, lab)) == []


def test_a_nurse_may_look_up_and_a_prescriber_may_not(http, prescriber, lab, nurse):
    code = create(http, prescriber)
    assert codes(look_up(http, nurse, presence="apcv")) == [code]
    assert look_up(http, prescriber).status_code == 403


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("ins", {"ins": "269052A12345689", "birth_date": BIRTH_DATE, "presence": "declared"}),
        ("ins", {"ins": "not an ins", "birth_date": BIRTH_DATE, "presence": "declared"}),
        ("birth_date", {"ins": VALID_INS, "birth_date": "2999-01-01", "presence": "declared"}),
        ("birth_date", {"ins": VALID_INS, "birth_date": "01/05/1969", "presence": "declared"}),
        ("presence", {"ins": VALID_INS, "birth_date": BIRTH_DATE, "presence": "guessed"}),
        ("presence", {"ins": VALID_INS, "birth_date": BIRTH_DATE}),
    ],
)
def test_invalid_lookups_are_422_naming_the_field_without_echoing_the_ins(http, lab, field, body):
    response = http.post(LOOKUP, json=body, headers=lab.headers)

    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert body["ins"] not in response.get_data(as_text=True)


def test_a_lookup_by_get_is_not_served(http, lab):
    response = http.get(f"{LOOKUP}?ins={VALID_INS}&birth_date={BIRTH_DATE}", headers=lab.headers)
    assert response.status_code == 405


def test_each_lookup_is_audited_on_what_it_listed_and_once_without_the_ins(
    http, session, prescriber, lab
):
    listed = create(http, prescriber)
    other_patient = create(http, prescriber, ins=OTHER_INS)

    look_up(http, lab, presence="ins_datamatrix")

    history = http.get(f"/api/v1/prescriptions/{listed}/history", headers=prescriber.headers)
    looked_up = [event for event in history.json["items"] if event["type"] == "looked_up"]
    assert [(e["detail"], e["actor"]["identifier"]) for e in looked_up] == [
        ({"presence": "ins_datamatrix"}, lab.identifier)
    ]
    untouched = http.get(
        f"/api/v1/prescriptions/{other_patient}/history", headers=prescriber.headers
    )
    assert "looked_up" not in [event["type"] for event in untouched.json["items"]]
    lookups = list(session.scalars(select(Event).where(Event.type == "patient_lookup")))
    assert [(e.prescription_id, e.actor_identifier, e.detail) for e in lookups] == [
        (None, lab.identifier, {"presence": "ins_datamatrix", "listed": 1})
    ]
    everything_stored = json.dumps([e.detail for e in session.scalars(select(Event))])
    assert VALID_INS not in everything_stored


def test_lookups_are_limited_per_client_with_retry_after(app, http, prescriber, lab, other_lab):
    settings = dataclasses.replace(app.extensions["epu.settings"], lookup_limit=3)
    app.extensions["epu.limits"] = Limits(settings)
    create(http, prescriber)

    for _ in range(3):
        assert look_up(http, lab).status_code == 200
    refused = look_up(http, lab)

    assert refused.status_code == 429 and refused.json["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert look_up(http, other_lab).status_code == 200


def test_the_laboratory_takes_a_listed_prescription_with_the_scans_ins_check(http, prescriber, lab):
    created = create(http, prescriber)
    listed = codes(look_up(http, lab))

    taken = http.post(
        "/api/v1/scans", json={"code": listed[0], "patient_ins": VALID_INS}, headers=lab.headers
    )
    wrong_patient = create(http, prescriber)
    mismatch = http.post(
        "/api/v1/scans", json={"code": wrong_patient, "patient_ins": OTHER_INS}, headers=lab.headers
    )

    assert listed == [created]
    assert taken.status_code == 200 and taken.json["patient"]["ins_match"] is True
    assert mismatch.status_code == 422 and mismatch.json["code"] == "patient_mismatch"


def test_every_prescription_a_lookup_lists_gets_its_own_audit_event(http, prescriber, lab):
    codes = [create(http, prescriber) for _ in range(3)]

    listed = look_up(http, lab, presence="carte_vitale")

    assert sorted(item["code"] for item in listed.json["items"]) == sorted(codes)
    for code in codes:
        history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers)
        looked_up = [event for event in history.json["items"] if event["type"] == "looked_up"]
        assert [event["detail"] for event in looked_up] == [{"presence": "carte_vitale"}]
