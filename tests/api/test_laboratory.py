import re
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from epu.codes import generate_code
from models import Event, Prescription
from models.base import utcnow
from tests.factories import BLOOD_COUNT, OTHER_INS, PROLACTIN, VALID_INS, prescription_body


@pytest.fixture
def code(http, prescriber) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    return response.json["code"]


def scan(http, lab, code, **extra):
    return http.post("/api/v1/scans", json={"code": code, **extra}, headers=lab.headers)


def patch(http, lab, code, changes, etag, mode="urgent", **extra):
    headers = {**lab.headers, **({"If-Match": etag} if etag else {})}
    body = {"changes": changes, "mode": mode, **extra}
    return http.patch(f"/api/v1/prescriptions/{code}", json=body, headers=headers)


def done(http, lab, code, *outcomes):
    return http.post(
        f"/api/v1/prescriptions/{code}/done", json={"lines": list(outcomes)}, headers=lab.headers
    )


def test_scan_takes_charge_and_is_idempotent_for_the_same_laboratory(http, lab, code):
    first = scan(http, lab, code)
    assert first.status_code == 200
    assert first.json["status"] == "in_progress"
    assert first.json["laboratory"] == {"finess": "130000029", "name": "Laboratoire des Calanques"}
    again = scan(http, lab, code)
    assert again.status_code == 200 and again.json["version"] == first.json["version"]


def test_scan_forgives_how_the_code_was_typed(http, lab, code):
    typed = " ".join(code[i : i + 4] for i in range(0, 18, 4)).lower().replace("0", "o")
    assert scan(http, lab, typed).status_code == 200


def test_a_typo_in_the_code_is_422_invalid_code(http, lab, code):
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    response = scan(http, lab, typo)
    assert response.status_code == 422 and response.json["code"] == "invalid_code"


def test_unknown_code_is_404(http, lab):
    assert scan(http, lab, generate_code()).status_code == 404


def test_held_by_another_laboratory_is_409_without_saying_which(http, lab, other_lab, code):
    scan(http, lab, code)
    response = scan(http, other_lab, code)
    assert response.status_code == 409
    assert response.json["code"] == "held_by_another_laboratory"
    assert "130000029" not in response.get_data(as_text=True)
    assert "Calanques" not in response.get_data(as_text=True)


def test_cancelled_is_410(http, prescriber, lab, code):
    http.post(
        f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
    )
    response = scan(http, lab, code)
    assert response.status_code == 410 and response.json["code"] == "cancelled"


def test_expired_is_410_even_before_the_expire_command(http, session, lab, code):
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    stored.expires_at = utcnow() - timedelta(days=1)
    session.commit()
    response = scan(http, lab, code)
    assert response.status_code == 410 and response.json["code"] == "expired"
    assert session.scalar(select(Prescription.status).where(Prescription.code == code)) == "expired"
    session.rollback()


def test_patient_mismatch_refuses_and_does_not_take(http, prescriber, lab, code):
    response = scan(http, lab, code, patient_ins=OTHER_INS)
    assert response.status_code == 422 and response.json["code"] == "patient_mismatch"
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert status.json["status"] == "active"


def test_patient_match_is_reported(http, lab, code):
    response = scan(http, lab, code, patient_ins=VALID_INS)
    assert response.json["patient"]["ins_match"] is True


def test_a_malformed_patient_ins_is_422(http, lab, code):
    response = scan(http, lab, code, patient_ins="123")
    assert response.status_code == 422 and "patient_ins" in response.json["errors"]


def test_release_gives_it_back_to_any_laboratory(http, lab, other_lab, code):
    scan(http, lab, code)
    released = http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    assert released.status_code == 200 and released.json["status"] == "active"
    assert released.json["laboratory"] is None
    assert scan(http, other_lab, code).status_code == 200


def test_a_free_prescription_is_taken_in_one_statement_and_keeps_its_earlier_proposals(
    http, app, lab, other_lab, code
):
    statements: list[str] = []
    engine = app.extensions["epu.engine"]
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        taken = scan(http, lab, code, patient_ins=VALID_INS)
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert taken.status_code == 200 and taken.json["patient"]["ins_match"] is True
    assert taken.json["proposals"] == [] and len(taken.json["lines"]) == 3
    on_prescriptions = [s for s in statements if re.search(r"\bprescriptions\b", s)]
    assert len(on_prescriptions) == 1 and on_prescriptions[0].startswith("UPDATE"), statements
    change = {"op": "add", "line": {"text": "Ferritine"}, "reason": "anemia"}
    proposed = patch(http, lab, code, [change], taken.headers["ETag"], mode="proposal")
    assert proposed.status_code == 202, proposed.json
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    again = scan(http, other_lab, code)
    assert again.status_code == 200 and again.json["laboratory"]["finess"] != "130000029"
    assert [item["status"] for item in again.json["proposals"]] == ["withdrawn"]


def test_only_the_holding_laboratory_reads_it(http, lab, other_lab, code):
    assert http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).status_code == 404
    scan(http, lab, code)
    assert http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).status_code == 200
    assert http.get(f"/api/v1/prescriptions/{code}/status", headers=lab.headers).status_code == 200
    for path in ("", "/status", "/history"):
        response = http.get(f"/api/v1/prescriptions/{code}{path}", headers=other_lab.headers)
        assert response.status_code == 404
    assert (
        http.post(f"/api/v1/prescriptions/{code}/release", headers=other_lab.headers).status_code
        == 404
    )


def test_adapting_the_prescription(http, lab, code):
    etag = scan(http, lab, code).headers["ETag"]
    response = patch(
        http,
        lab,
        code,
        [
            {
                "op": "replace",
                "line_id": "L1",
                "line": {"loinc": "718-7"},
                "reason": "NFS faite hier",
            },
            {"op": "remove", "line_id": "L3", "reason": "non réalisable en ville"},
            {
                "op": "add",
                "line": {"loinc": "2345-7"},
                "reason": "demande du médecin par téléphone",
            },
        ],
        etag,
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["version"] == 3 and body["modified"] is True
    assert response.headers["ETag"] == '"v3"'
    lines = {line["id"]: line for line in body["lines"]}
    assert lines["L1"]["status"] == "replaced" and lines["L1"]["reason"] == "NFS faite hier"
    assert lines["L3"]["status"] == "removed"
    assert lines["L4"] == {
        **lines["L4"],
        "loinc": "718-7",
        "replaces": "L1",
        "origin": "laboratory",
        "status": "requested",
    }
    assert lines["L5"]["origin"] == "laboratory" and lines["L5"]["replaces"] is None


def test_patch_needs_if_match_and_refuses_a_stale_one(http, session, lab, code):
    etag = scan(http, lab, code).headers["ETag"]
    change = [{"op": "remove", "line_id": "L3", "reason": "r"}]
    assert patch(http, lab, code, change, None).status_code == 428
    assert patch(http, lab, code, change, '"v1"').status_code == 412
    assert patch(http, lab, code, change, etag).status_code == 200
    assert patch(http, lab, code, change, etag).status_code == 412


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"op": "remove", "line_id": "L3", "reason": ""}, "changes[1].reason"),
        ({"op": "remove", "line_id": "L9", "reason": "r"}, "changes[1].line_id"),
        ({"op": "add", "line": {"loinc": "2842-4"}, "reason": "r"}, "changes[1].line.loinc"),
        ({"op": "add", "reason": "r"}, "changes[1].line"),
        (
            {
                "op": "replace",
                "line_id": "L2",
                "line": {"loinc": "718-7", "renewals": 20},
                "reason": "r",
            },
            "changes[1].line.renewals",
        ),
        ({"op": "rename", "line_id": "L2", "reason": "r"}, "changes[1].op"),
    ],
)
def test_a_bad_change_refuses_the_whole_patch(http, lab, code, change, field):
    etag = scan(http, lab, code).headers["ETag"]
    good = {"op": "remove", "line_id": "L1", "reason": "r"}
    response = patch(http, lab, code, [good, change], etag)
    assert response.status_code == 422 and field in response.json["errors"], response.json
    after = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).json
    assert after["version"] == 2 and after["lines"][0]["status"] == "requested"


def test_a_line_no_longer_requested_cannot_be_changed(http, lab, code):
    scan(http, lab, code)
    etag = done(http, lab, code, {"line_id": "L1", "outcome": "done"}).headers["ETag"]
    response = patch(http, lab, code, [{"op": "remove", "line_id": "L1", "reason": "r"}], etag)
    assert response.status_code == 409


def test_marking_done_in_several_calls_then_completed(http, prescriber, lab, code):
    scan(http, lab, code)
    partial = done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    assert partial.status_code == 200 and partial.json["status"] == "in_progress"
    final = done(
        http,
        lab,
        code,
        {"line_id": "L2", "outcome": "done"},
        {"line_id": "L3", "outcome": "not_done", "reason": "échantillon non conforme"},
    )
    assert final.json["status"] == "completed"
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["status"] == "completed"
    assert [line["status"] for line in status["lines"]] == ["done", "done", "not_done"]


def test_done_refusals(http, lab, code):
    scan(http, lab, code)
    missing_reason = done(http, lab, code, {"line_id": "L1", "outcome": "not_done"})
    assert missing_reason.status_code == 422 and "lines[0].reason" in missing_reason.json["errors"]
    unknown = done(http, lab, code, {"line_id": "L7", "outcome": "done"})
    assert unknown.status_code == 422 and "lines[0].line_id" in unknown.json["errors"]
    done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    twice = done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    assert twice.status_code == 409 and twice.json["code"] == "line_not_requested"


def test_renewals_bring_done_lines_back_and_release_the_laboratory(
    http, prescriber, lab, other_lab
):
    body = prescription_body(lines=[{"loinc": BLOOD_COUNT, "renewals": 1}, {"loinc": PROLACTIN}])
    code = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers).json["code"]
    scan(http, lab, code)
    first = done(
        http, lab, code, {"line_id": "L1", "outcome": "done"}, {"line_id": "L2", "outcome": "done"}
    )
    assert first.json["status"] == "active"
    lines = {line["id"]: line for line in first.json["lines"]}
    assert lines["L1"]["status"] == "requested" and lines["L1"]["renewals_left"] == 0
    assert lines["L2"]["status"] == "done"
    assert scan(http, other_lab, code).status_code == 200
    second = done(http, other_lab, code, {"line_id": "L1", "outcome": "done"})
    assert second.json["status"] == "completed"
    types = [
        event["type"]
        for event in http.get(
            f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers
        ).json["items"]
    ]
    assert types.count("renewed") == 1 and types[-1] == "completed"


def test_history_tells_every_step_with_actors_and_reasons(http, prescriber, lab, code):
    http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
    etag = scan(http, lab, code, patient_ins=VALID_INS).headers["ETag"]
    patch(http, lab, code, [{"op": "remove", "line_id": "L3", "reason": "non réalisable"}], etag)
    done(
        http,
        lab,
        code,
        {"line_id": "L1", "outcome": "done"},
        {"line_id": "L2", "outcome": "not_done", "reason": "hémolysé"},
    )
    items = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json[
        "items"
    ]
    assert [item["type"] for item in items] == [
        "created",
        "read",
        "taken",
        "modified",
        "applied_urgent",
        "line_done",
        "line_not_done",
        "completed",
    ]
    assert items[0]["actor"] == {
        "role": "prescriber",
        "identifier": "10005688790",
        "name": "Dr Amélie Thomas",
    }
    assert items[2]["actor"]["identifier"] == "130000029"
    assert items[3]["detail"]["reason"] == "non réalisable"
    assert items[4]["detail"] == {"proposal": "P1", "reason": None}
    assert items[6]["detail"]["reason"] == "hémolysé"
    assert items == sorted(items, key=lambda item: item["at"])
    held = http.get(f"/api/v1/prescriptions/{code}/history", headers=lab.headers)
    assert held.status_code == 200


def test_patient_objection_hides_execution_from_the_prescriber(http, prescriber, lab, code):
    etag = scan(http, lab, code, patient_objects_to_sharing=True).headers["ETag"]
    patch(http, lab, code, [{"op": "remove", "line_id": "L3", "reason": "r"}], etag)
    done(
        http, lab, code, {"line_id": "L1", "outcome": "done"}, {"line_id": "L2", "outcome": "done"}
    )
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["status"] == "completed" and status["execution_withheld"] is True
    assert status["laboratory"] is None and status["modified"] is None
    assert all(line["status"] is None for line in status["lines"])
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    assert [item["type"] for item in history["items"]] == ["created", "applied_urgent", "completed"]
    assert "130000029" not in str(history) and "Calanques" not in str(history)


def test_too_many_unknown_codes_pause_scanning(http, session, app, lab, code):
    from api.limits import Limits
    from epu.settings import Settings

    settings: Settings = app.extensions["epu.settings"]
    app.extensions["epu.limits"] = Limits(Settings(**{**vars(settings), "failed_scan_limit": 3}))
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    for _ in range(5):
        assert scan(http, lab, typo).status_code == 422  # check-character failures do not count
    for _ in range(3):
        assert scan(http, lab, generate_code()).status_code == 404
    blocked = scan(http, lab, code)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    events = session.scalars(select(Event.type).where(Event.type == "failed_scans_limit")).all()
    assert events == ["failed_scans_limit"]


def test_unknown_foreign_and_not_yours_codes_look_the_same(http, lab, other_lab, code):
    scan(http, other_lab, code)
    from epu.codes import generate_code as new_code

    not_yours = http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers)
    unknown = http.get(f"/api/v1/prescriptions/{new_code()}", headers=lab.headers)
    assert not_yours.status_code == unknown.status_code == 404
    assert not_yours.get_data() == unknown.get_data()


def test_refused_requests_write_nothing(http, session, lab, other_lab, code):
    scan(http, lab, code)
    before = session.scalar(select(func.count()).select_from(Event))
    session.rollback()
    scan(http, other_lab, code)
    done(http, lab, code, {"line_id": "L1", "outcome": "not_done"})
    assert session.scalar(select(func.count()).select_from(Event)) == before


def test_if_match_uses_strong_comparison_and_accepts_a_star(http, lab, code):
    etag = scan(http, lab, code).headers["ETag"]
    change = [{"op": "remove", "line_id": "L3", "reason": "r"}]
    assert patch(http, lab, code, change, f"W/{etag}").status_code == 412
    assert patch(http, lab, code, change, f'"v0", {etag}').status_code == 200
    assert (
        patch(http, lab, code, [{"op": "remove", "line_id": "L2", "reason": "r"}], "*").status_code
        == 200
    )


@pytest.mark.parametrize("if_match", ['"', "W/", '"v²"', ",,", '"v1" junk'])
def test_garbled_if_match_is_a_412_not_an_error(http, lab, code, if_match):
    scan(http, lab, code)
    change = [{"op": "remove", "line_id": "L3", "reason": "r"}]
    assert patch(http, lab, code, change, if_match).status_code == 412


def test_a_laboratory_that_held_it_never_learns_which_laboratory_took_it_next(
    http, lab, other_lab, code
):
    scan(http, lab, code)
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    scan(http, other_lab, code)
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=lab.headers)
    assert history.status_code == 200
    text = history.get_data(as_text=True)
    assert "750000010" not in text and "Marais" not in text
    assert "130000029" in text


def test_the_laboratory_keeps_reading_what_it_completed_and_a_retry_is_told_it_is_done(
    http, prescriber, lab, other_lab
):
    body = prescription_body(lines=[{"loinc": BLOOD_COUNT}, {"loinc": PROLACTIN}])
    code = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers).json["code"]
    scan(http, lab, code)
    outcomes = ({"line_id": "L1", "outcome": "done"}, {"line_id": "L2", "outcome": "done"})
    assert done(http, lab, code, *outcomes).json["status"] == "completed"
    for path in ("", "/status", "/history"):
        response = http.get(f"/api/v1/prescriptions/{code}{path}", headers=lab.headers)
        assert response.status_code == 200, path
    assert (
        http.get(f"/api/v1/prescriptions/{code}", headers=lab.headers).json["lines"][0]["status"]
        == "done"
    )
    retry = done(http, lab, code, *outcomes)
    assert retry.status_code == 409 and retry.json["code"] == "prescription_completed"
    stranger = done(http, other_lab, code, *outcomes)
    assert stranger.status_code == 404
    assert http.get(f"/api/v1/prescriptions/{code}", headers=other_lab.headers).status_code == 404


def test_the_laboratory_loses_sight_of_a_renewal_another_laboratory_takes(
    http, prescriber, lab, other_lab
):
    body = prescription_body(lines=[{"loinc": BLOOD_COUNT, "renewals": 1}])
    code = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers).json["code"]
    scan(http, lab, code)
    assert done(http, lab, code, {"line_id": "L1", "outcome": "done"}).json["status"] == "active"
    assert http.get(f"/api/v1/prescriptions/{code}/status", headers=lab.headers).status_code == 200
    early = done(http, lab, code, {"line_id": "L1", "outcome": "done"})
    assert early.status_code == 409 and early.json["code"] == "not_held"
    scan(http, other_lab, code)
    for path in ("", "/status"):
        response = http.get(f"/api/v1/prescriptions/{code}{path}", headers=lab.headers)
        assert response.status_code == 404, path
