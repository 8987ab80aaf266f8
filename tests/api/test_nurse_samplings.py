"""The home nurse: reading a prescription by scanning it, recording and correcting samplings,
what each party then sees."""

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from api.limits import Limits
from epu import lifecycle
from epu.codes import generate_code
from epu.statuses import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    PRESCRIPTION_STATUSES,
)
from models import Event, NurseRead, Prescription, Sampling
from models.base import utcnow
from qr.render import render_png
from tests.factories import OTHER_INS, VALID_INS, prescription_body

SCAN = "/api/v1/samplings/scan"


def create(http, prescriber, **overrides) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(**overrides), headers=prescriber.headers
    )
    assert response.status_code == 201, response.json
    return response.json["code"]


@pytest.fixture
def code(http, prescriber) -> str:
    return create(http, prescriber)


def nurse_scan(http, nurse, code, **extra):
    return http.post(SCAN, json={"code": code, **extra}, headers=nurse.headers)


def now_iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).astimezone().isoformat()


def sampling_body(**overrides) -> dict:
    body = {
        "collected_at": now_iso(),
        "specimens": [
            {"type": "WB", "lines": ["L1"], "count": 1},
            {"type": "SER", "lines": ["L2", "L3"], "count": 2},
        ],
        "comment": "Patiente à jeun",
        "destination": {"finess": "130000029"},
    }
    body.update(overrides)
    return body


def record(http, nurse, code, **overrides):
    return http.post(
        f"/api/v1/prescriptions/{code}/samplings",
        json=sampling_body(**overrides),
        headers=nurse.headers,
    )


def correct(http, nurse, code, sampling_id, **overrides):
    return http.put(
        f"/api/v1/prescriptions/{code}/samplings/{sampling_id}",
        json=sampling_body(**overrides),
        headers=nurse.headers,
    )


def lab_scan(http, lab, code, **extra):
    return http.post("/api/v1/scans", json={"code": code, **extra}, headers=lab.headers)


def count(session, model, *where) -> int:
    found = session.scalar(select(func.count()).select_from(model).where(*where))
    session.rollback()
    return found


# ---- the nurse's scan -----------------------------------------------------------------------


def test_the_nurses_scan_reads_the_prescription_without_taking_charge(
    http, session, prescriber, nurse, lab, code
):
    read = nurse_scan(http, nurse, code)

    assert read.status_code == 200, read.json
    body = read.json
    assert (body["code"], body["status"], body["laboratory"]) == (code, "active", None)
    assert [line["id"] for line in body["lines"]] == ["L1", "L2", "L3"]
    assert body["lines"][1]["patient_instructions"][0]["code"] == "MED-1165"
    assert body["clinical_context"] == "Asthénie depuis trois mois"
    assert body["result_return"]["channels"] == ["mssante"]
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert status.json["status"] == "active" and status.json["version"] == body["version"]
    assert lab_scan(http, lab, code).status_code == 200
    events = session.scalars(select(Event.type).where(Event.type == "read_by_nurse")).all()
    assert events == ["read_by_nurse"]


def test_the_nurses_scan_forgives_typing_and_checks_the_check_character(http, nurse, code):
    typed = " ".join(code[i : i + 4] for i in range(0, 18, 4)).lower()
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]

    assert nurse_scan(http, nurse, typed).status_code == 200
    refused = nurse_scan(http, nurse, typo)
    assert (refused.status_code, refused.json["code"]) == (422, "invalid_code")
    assert nurse_scan(http, nurse, generate_code()).status_code == 404


def test_the_nurses_scan_checks_the_patients_ins(http, nurse, code):
    matched = nurse_scan(http, nurse, code, patient_ins=VALID_INS)
    mismatch = nurse_scan(http, nurse, code, patient_ins=OTHER_INS)

    assert matched.json["patient"]["ins_match"] is True
    assert (mismatch.status_code, mismatch.json["code"]) == (422, "patient_mismatch")


def test_the_nurses_unknown_scans_are_limited_like_a_laboratorys(app, http, nurse, code):
    settings = dataclasses.replace(app.extensions["epu.settings"], failed_scan_limit=2)
    app.extensions["epu.limits"] = Limits(settings)

    assert [nurse_scan(http, nurse, generate_code()).status_code for _ in range(2)] == [404, 404]
    paused = nurse_scan(http, nurse, code)

    assert paused.status_code == 429 and int(paused.headers["Retry-After"]) >= 1


def test_the_nurse_may_scan_a_photo_of_the_qr_code(http, nurse, code):
    photo = io.BytesIO(render_png(code, 8))

    read = http.post(
        SCAN,
        data={"image": (photo, "ordonnance.png", "image/png"), "patient_ins": VALID_INS},
        headers=nurse.headers,
        content_type="multipart/form-data",
    )

    assert read.status_code == 200, read.json
    assert read.json["code"] == code and read.json["patient"]["ins_match"] is True


def test_the_nurse_never_sees_the_laboratory_nor_its_outcomes(http, nurse, lab, code):
    lab_scan(http, lab, code)
    http.post(
        f"/api/v1/prescriptions/{code}/done",
        json={"lines": [{"line_id": "L1", "outcome": "not_done", "reason": "hémolysé"}]},
        headers=lab.headers,
    )

    read = nurse_scan(http, nurse, code)

    assert read.status_code == 200
    assert read.json["status"] == "in_progress" and read.json["laboratory"] is None
    assert [line["id"] for line in read.json["lines"]] == ["L2", "L3"]
    text = read.get_data(as_text=True)
    for secret in ("130000029", "Calanques", "hémolysé", "not_done"):
        assert secret not in text


@pytest.mark.parametrize(
    ("close", "status", "slug"),
    [("cancel", 410, "cancelled"), ("expire", 410, "expired")],
)
def test_a_closed_prescription_is_refused_by_name(
    http, session, prescriber, nurse, code, close, status, slug
):
    if close == "cancel":
        http.post(
            f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
        )
    else:
        session.execute(
            update(Prescription)
            .where(Prescription.code == code)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        session.commit()

    refused = nurse_scan(http, nurse, code)

    assert (refused.status_code, refused.json["code"]) == (status, slug)


def test_other_roles_may_not_use_the_nurses_scan(http, prescriber, lab, code):
    assert nurse_scan(http, lab, code).status_code == 403
    assert nurse_scan(http, prescriber, code).status_code == 403


# ---- what a nurse may see ---------------------------------------------------------------------


def test_a_nurse_may_record_only_on_what_she_scanned_answered_as_an_unknown_code(
    http, nurse, other_nurse, code
):
    nurse_scan(http, nurse, code)

    not_scanned = record(http, other_nurse, code)
    unknown = record(http, other_nurse, generate_code())

    assert not_scanned.status_code == unknown.status_code == 404
    assert not_scanned.json == unknown.json


def test_a_nurses_access_ends_30_days_after_her_last_scan(http, session, nurse, code):
    nurse_scan(http, nurse, code)
    session.execute(update(NurseRead).values(scanned_at=utcnow() - timedelta(days=30, minutes=1)))
    session.commit()

    assert record(http, nurse, code).status_code == 404
    assert nurse_scan(http, nurse, code).status_code == 200  # scanning again opens it again
    assert record(http, nurse, code).status_code == 201


def test_a_nurse_reads_nothing_through_the_other_endpoints(http, nurse, code):
    nurse_scan(http, nurse, code)
    for path in ("", "/status", "/history", "/qr.png", "/ordonnance.pdf"):
        response = http.get(f"/api/v1/prescriptions/{code}{path}", headers=nurse.headers)
        assert response.status_code in (403, 404), path
    assert http.get(f"/fhir/Task/{code}", headers=nurse.headers).status_code in (403, 404)


def test_a_nurse_sees_only_her_own_samplings(http, nurse, other_nurse, code):
    nurse_scan(http, nurse, code)
    mine = record(http, nurse, code).json

    hers = nurse_scan(http, other_nurse, code).json["samplings"]
    again = nurse_scan(http, nurse, code).json["samplings"]

    assert hers == []
    assert [item["id"] for item in again] == [mine["id"]]


# ---- recording a sampling ---------------------------------------------------------------------


def test_recording_a_sampling_answers_it_and_the_prescriber_sees_its_status(
    http, session, prescriber, nurse, code
):
    nurse_scan(http, nurse, code)
    before = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)

    created = record(http, nurse, code)

    assert created.status_code == 201, created.json
    body = created.json
    assert set(body) >= {"id", "collected_at", "nurse", "specimens", "not_collected", "destination"}
    assert body["nurse"] == {"rpps": nurse.identifier, "name": "Claire Dubois IDEL"}
    assert body["specimens"][1] == {
        "type": "SER",
        "label": "Sérum",
        "lines": ["L2", "L3"],
        "count": 2,
    }
    assert body["destination"] == {"finess": "130000029"} and body["status"] == "collected"
    status = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": before.headers["ETag"]},
    )
    assert status.status_code == 200, "the sampling must change the ETag"
    assert status.json["sampling"] == {"status": "collected", "at": body["collected_at"]}
    assert status.json["status"] == "active"
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    sampled = [event for event in history["items"] if event["type"] == "sampled"]
    assert [(e["actor"]["role"], e["actor"]["identifier"]) for e in sampled] == [
        ("nurse", nurse.identifier)
    ]
    assert sampled[0]["detail"]["sampling"] == body["id"]


def test_a_sampling_leaving_a_line_out_is_partially_collected(http, prescriber, nurse, code):
    nurse_scan(http, nurse, code)

    created = record(
        http,
        nurse,
        code,
        specimens=[{"type": "WB", "lines": ["L1"], "count": 1}],
        not_collected=[{"line": "L3", "reason": "refus du patient"}],
    )

    assert created.status_code == 201, created.json
    assert created.json["status"] == "partially_collected"
    assert created.json["not_collected"] == [{"line": "L3", "reason": "refus du patient"}]
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["sampling"]["status"] == "partially_collected"


def test_collected_at_keeps_the_instant_given_with_its_offset(http, nurse, code):
    nurse_scan(http, nurse, code)
    moment = datetime.now(UTC)
    paris = moment.astimezone(ZoneInfo("Europe/Paris"))

    created = record(http, nurse, code, collected_at=paris.isoformat())

    assert created.status_code == 201, created.json
    returned = datetime.fromisoformat(created.json["collected_at"].replace("Z", "+00:00"))
    assert abs(returned - moment) < timedelta(seconds=1)


def test_a_prescription_may_receive_several_samplings(http, nurse, code):
    nurse_scan(http, nurse, code)
    first = record(http, nurse, code, specimens=[{"type": "WB", "lines": ["L1"], "count": 1}])
    second = record(http, nurse, code, specimens=[{"type": "UR", "lines": ["L2"], "count": 1}])

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json["id"] != second.json["id"]


LONG_AGO = "2000-01-01T08:00:00+01:00"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"specimens": [{"type": "XYZ", "lines": ["L1"], "count": 1}]}, "specimens[0].type"),
        ({"specimens": [{"type": "ser", "lines": ["L1"], "count": 1}]}, "specimens[0].type"),
        ({"specimens": [{"type": "SER", "lines": ["L9"], "count": 1}]}, "specimens[0].lines[0]"),
        (
            {
                "specimens": [
                    {"type": "SER", "lines": ["L1"], "count": 1},
                    {"type": "WB", "lines": ["L2", "L1"], "count": 1},
                ]
            },
            "specimens[1].lines[1]",
        ),
        (
            {"not_collected": [{"line": "L1", "reason": "veine difficile"}]},
            "not_collected[0].line",
        ),
        ({"not_collected": [{"line": "L4", "reason": "x"}]}, "not_collected[0].line"),
        ({"not_collected": [{"line": "L4", "reason": "  "}]}, "not_collected[0].reason"),
        ({"specimens": [{"type": "SER", "lines": ["L1"], "count": 0}]}, "specimens[0].count"),
        ({"specimens": [{"type": "SER", "lines": ["L1"], "count": 11}]}, "specimens[0].count"),
        ({"specimens": [{"type": "SER", "lines": ["L1"], "count": "2"}]}, "specimens[0].count"),
        ({"specimens": [{"type": "SER", "lines": [], "count": 1}]}, "specimens[0].lines"),
        ({"specimens": []}, "specimens"),
        ({"collected_at": "2026-12-01T08:00:00"}, "collected_at"),
        ({"collected_at": "hier matin"}, "collected_at"),
        ({"collected_at": LONG_AGO}, "collected_at"),
        ({"collected_at": "2099-01-01T08:00:00+01:00"}, "collected_at"),
        ({"destination": {"finess": "130000028"}}, "destination.finess"),
    ],
)
def test_every_sampling_rule_is_422_naming_the_path_and_writes_nothing(
    http, session, nurse, code, overrides, path
):
    nurse_scan(http, nurse, code)

    refused = record(http, nurse, code, **overrides)

    assert refused.status_code == 422, refused.json
    assert path in refused.json["errors"], refused.json
    assert count(session, Sampling) == 0
    assert count(session, Event, Event.type == "sampled") == 0


def test_a_line_no_longer_requested_is_409(http, session, nurse, lab, code):
    lab_scan(http, lab, code)
    http.post(
        f"/api/v1/prescriptions/{code}/done",
        json={"lines": [{"line_id": "L1", "outcome": "done"}]},
        headers=lab.headers,
    )
    nurse_scan(http, nurse, code)

    refused = record(http, nurse, code)

    assert (refused.status_code, refused.json["code"]) == (409, "line_not_requested")
    assert count(session, Sampling) == 0


def test_a_sampling_refuses_a_missing_body_field(http, nurse, code):
    nurse_scan(http, nurse, code)
    response = http.post(
        f"/api/v1/prescriptions/{code}/samplings",
        json={"specimens": [{"type": "SER", "lines": ["L1"]}]},
        headers=nurse.headers,
    )
    assert response.status_code == 422 and "collected_at" in response.json["errors"]


# ---- correcting a sampling ----------------------------------------------------------------------


def test_the_nurse_corrects_her_last_sampling_within_24_hours(http, session, nurse, code):
    nurse_scan(http, nurse, code)
    created = record(http, nurse, code).json

    fixed = correct(
        http, nurse, code, created["id"], specimens=[{"type": "PLAS", "lines": ["L1"], "count": 1}]
    )

    assert fixed.status_code == 200, fixed.json
    assert fixed.json["id"] == created["id"] and fixed.json["corrected_at"] is not None
    plasma = {"type": "PLAS", "label": "Plasma", "lines": ["L1"], "count": 1}
    assert fixed.json["specimens"] == [plasma]
    assert fixed.json["status"] == "partially_collected"
    assert count(session, Event, Event.type == "sampling_corrected") == 1
    assert nurse_scan(http, nurse, code).json["samplings"][0]["specimens"][0]["type"] == "PLAS"


def test_a_correction_after_24_hours_is_refused(http, session, nurse, code):
    nurse_scan(http, nurse, code)
    created = record(http, nurse, code).json
    session.execute(update(Sampling).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
    session.commit()

    refused = correct(http, nurse, code, created["id"])

    assert (refused.status_code, refused.json["code"]) == (409, "sampling_not_correctable")


def test_only_her_last_sampling_may_be_corrected(http, nurse, code):
    nurse_scan(http, nurse, code)
    first = record(http, nurse, code).json
    record(http, nurse, code)

    refused = correct(http, nurse, code, first["id"])

    assert (refused.status_code, refused.json["code"]) == (409, "sampling_not_correctable")


def test_another_nurses_sampling_answers_as_one_that_does_not_exist(http, nurse, other_nurse, code):
    nurse_scan(http, nurse, code)
    nurse_scan(http, other_nurse, code)
    hers = record(http, nurse, code).json

    theirs = correct(http, other_nurse, code, hers["id"])
    unknown = correct(http, other_nurse, code, "0" * 32)

    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json == unknown.json


def test_a_correction_is_validated_like_a_recording(http, nurse, code):
    nurse_scan(http, nurse, code)
    created = record(http, nurse, code).json

    refused = correct(
        http, nurse, code, created["id"], specimens=[{"type": "NOPE", "lines": ["L1"], "count": 1}]
    )

    assert refused.status_code == 422 and "specimens[0].type" in refused.json["errors"]


# ---- the laboratory and the prescriber afterwards --------------------------------------------


def test_the_laboratory_takes_it_after_the_sampling_and_sees_the_samplings(http, nurse, lab, code):
    nurse_scan(http, nurse, code)
    sampling = record(http, nurse, code).json

    taken = lab_scan(http, lab, code, patient_ins=VALID_INS)
    read = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers)

    assert taken.status_code == 200 and taken.json["status"] == "in_progress"
    for body in (taken.json, read.json):
        assert [item["id"] for item in body["samplings"]] == [sampling["id"]]
        nurse_shown = {"rpps": nurse.identifier, "name": "Claire Dubois IDEL"}
        assert body["samplings"][0]["nurse"] == nurse_shown
        assert body["samplings"][0]["specimens"] == sampling["specimens"]


def test_the_patients_objection_hides_the_nurse_from_the_prescriber(
    http, prescriber, nurse, lab, code
):
    nurse_scan(http, nurse, code)
    record(http, nurse, code)
    lab_scan(http, lab, code, patient_objects_to_sharing=True)

    read = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers)
    lab_read = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers)

    assert read.json["samplings"][0]["nurse"] is None
    assert read.json["samplings"][0]["comment"] is None
    sampled = [event for event in history.json["items"] if event["type"] == "sampled"]
    assert sampled and all(event["actor"]["identifier"] is None for event in sampled)
    assert all(event["actor"]["name"] is None for event in sampled)
    for text in (read.get_data(as_text=True), history.get_data(as_text=True)):
        assert nurse.identifier not in text and "Dubois" not in text
    assert lab_read.json["samplings"][0]["nurse"]["rpps"] == nurse.identifier


# ---- the lifecycle table's nurse rows -----------------------------------------------------------


def bring_to(http, session, prescriber, lab, code, state) -> None:
    if state in (IN_PROGRESS, COMPLETED):
        assert lab_scan(http, lab, code).status_code == 200
    if state == COMPLETED:
        done = [{"line_id": "L1", "outcome": "done"}]
        response = http.post(
            f"/api/v1/prescriptions/{code}/done", json={"lines": done}, headers=lab.headers
        )
        assert response.status_code == 200, response.json
    if state == CANCELLED:
        http.post(
            f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
        )
    if state == EXPIRED:
        session.execute(
            update(Prescription)
            .where(Prescription.code == code)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        session.commit()


@pytest.mark.parametrize("state", PRESCRIPTION_STATUSES)
def test_the_nurses_actions_do_what_the_lifecycle_table_says(
    http, session, prescriber, nurse, lab, state
):
    code = create(http, prescriber, lines=[{"loinc": "57022-6"}])
    nurse_scan(http, nurse, code)  # her access, while it was open
    bring_to(http, session, prescriber, lab, code, state)
    specimens = [{"type": "WB", "lines": ["L1"], "count": 1}]
    calls = {
        lifecycle.NURSE_READ: lambda: nurse_scan(http, nurse, code),
        lifecycle.SAMPLE: lambda: record(http, nurse, code, specimens=specimens),
    }

    for action, call in calls.items():
        expected = lifecycle.outcome(state, action, lifecycle.NURSE)
        response = call()
        if isinstance(expected, str):
            assert response.status_code in (200, 201), (action, response.json)
        else:
            assert response.json["code"] == expected.slug, (action, response.json)
        stored = session.scalar(select(Prescription.status).where(Prescription.code == code))
        session.rollback()
        assert stored == state
