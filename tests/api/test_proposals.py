"""The biologist's changes (art. L6211-8 CSP): proposed and answered, or applied at once."""

import pytest

from tests.factories import prescription_body

REPLACE_L1 = {"op": "replace", "line_id": "L1", "line": {"loinc": "718-7"}, "reason": "NFS hier"}
REMOVE_L3 = {"op": "remove", "line_id": "L3", "reason": "non réalisable en ville"}
ADD = {"op": "add", "line": {"loinc": "2345-7"}, "reason": "glycémie utile"}


@pytest.fixture
def code(http, prescriber, lab) -> str:
    created = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    code = created.json["code"]
    http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    return code


def etag_of(http, party, code) -> str:
    return http.get(f"/api/v1/prescriptions/{code}/status", headers=party.headers).headers["ETag"]


def propose(http, lab, code, changes, mode=None, **extra):
    body = {"changes": changes, **({"mode": mode} if mode else {}), **extra}
    headers = {**lab.headers, "If-Match": etag_of(http, lab, code)}
    return http.patch(f"/api/v1/prescriptions/{code}", json=body, headers=headers)


def answer(http, party, code, proposal_id, verb, **body):
    return http.post(
        f"/api/v1/prescriptions/{code}/proposals/{proposal_id}/{verb}",
        json=body,
        headers=party.headers,
    )


def withdraw(http, lab, code, proposal_id):
    return http.post(
        f"/api/v1/prescriptions/{code}/proposals/{proposal_id}/withdraw", headers=lab.headers
    )


def report(http, lab, code, *line_ids):
    outcomes = [{"line_id": line_id, "outcome": "done"} for line_id in line_ids]
    return http.post(
        f"/api/v1/prescriptions/{code}/done", json={"lines": outcomes}, headers=lab.headers
    )


def history_types(http, party, code) -> list[str]:
    items = http.get(f"/api/v1/prescriptions/{code}/history", headers=party.headers).json["items"]
    return [item["type"] for item in items if item["type"] != "read"]


def line_statuses(body) -> dict[str, str]:
    return {line["id"]: line["status"] for line in body["lines"]}


def test_a_change_is_a_proposal_by_default_and_nothing_changes_yet(http, prescriber, lab, code):
    before = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers)
    response = propose(http, lab, code, [REPLACE_L1, REMOVE_L3])
    assert response.status_code == 202, response.json
    body = response.json
    assert line_statuses(body) == {"L1": "requested", "L2": "requested", "L3": "requested"}
    assert body["modified"] is False
    assert body["version"] > before.json["version"]
    assert response.headers["ETag"] != before.headers["ETag"]
    [proposal] = body["proposals"]
    assert proposal == {
        **proposal,
        "id": "P1",
        "status": "pending",
        "mode": "proposal",
        "laboratory": {"finess": "130000029", "name": "Laboratoire des Calanques"},
        "answered_at": None,
    }
    assert [change["reason"] for change in proposal["changes"]] == [
        "NFS hier",
        "non réalisable en ville",
    ]
    seen = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).json
    assert seen["proposals"] == body["proposals"]
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["proposals"] == {
        "pending": 1,
        "last": {"id": "P1", "status": "pending", "mode": "proposal"},
    }
    assert history_types(http, prescriber, code)[-1] == "proposed"


def test_urgent_changes_apply_at_once_and_are_shown_as_applied(http, prescriber, lab, code):
    response = propose(http, lab, code, [REMOVE_L3], mode="urgent")
    assert response.status_code == 200
    assert line_statuses(response.json)["L3"] == "removed"
    assert response.json["proposals"][0]["status"] == "applied"
    assert response.json["proposals"][0]["mode"] == "urgent"
    assert history_types(http, prescriber, code)[-2:] == ["modified", "applied_urgent"]


def test_prescriber_unavailable_needs_a_reason(http, prescriber, lab, code):
    missing = propose(http, lab, code, [REMOVE_L3], mode="prescriber_unavailable")
    assert missing.status_code == 422 and "reason" in missing.json["errors"]
    blank = propose(http, lab, code, [REMOVE_L3], mode="prescriber_unavailable", reason="  ")
    assert blank.status_code == 422 and "reason" in blank.json["errors"]
    why = "cabinet fermé, pas de réponse au 04 91 00 00 00 à 8 h 10"
    applied = propose(http, lab, code, [REMOVE_L3], mode="prescriber_unavailable", reason=why)
    assert applied.status_code == 200
    assert line_statuses(applied.json)["L3"] == "removed"
    assert applied.json["proposals"][0]["reason"] == why
    items = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    event = [item for item in items["items"] if item["type"] != "read"][-1]
    assert event["type"] == "applied_prescriber_unavailable"
    assert event["detail"] == {"proposal": "P1", "reason": why}


def test_a_bad_mode_is_422(http, lab, code):
    response = propose(http, lab, code, [REMOVE_L3], mode="whenever")
    assert response.status_code == 422 and "mode" in response.json["errors"]


def test_a_pending_proposal_blocks_only_its_lines_and_only_one_is_pending(http, lab, code):
    propose(http, lab, code, [REPLACE_L1])
    blocked = report(http, lab, code, "L1")
    assert blocked.status_code == 409
    assert blocked.json["code"] == "proposal_pending" and blocked.json["proposal"] == "P1"
    assert report(http, lab, code, "L2").status_code == 200
    second = propose(http, lab, code, [REMOVE_L3])
    assert second.status_code == 409 and second.json["code"] == "proposal_pending"
    touching = propose(http, lab, code, [{**REPLACE_L1, "line": {"loinc": "2345-7"}}], "urgent")
    assert touching.status_code == 409 and touching.json["code"] == "proposal_pending"
    elsewhere = propose(http, lab, code, [REMOVE_L3], mode="urgent")
    assert elsewhere.status_code == 200
    assert [p["status"] for p in elsewhere.json["proposals"]] == ["pending", "applied"]


def test_withdraw_then_lines_can_be_reported(http, prescriber, lab, code):
    propose(http, lab, code, [REPLACE_L1])
    version = etag_of(http, prescriber, code)
    response = withdraw(http, lab, code, "P1")
    assert response.status_code == 200
    assert response.json["proposals"][0]["status"] == "withdrawn"
    assert etag_of(http, prescriber, code) != version
    again = withdraw(http, lab, code, "P1")
    assert again.status_code == 200 and again.json["version"] == response.json["version"]
    assert history_types(http, prescriber, code).count("proposal_withdrawn") == 1
    assert report(http, lab, code, "L1").status_code == 200
    late = answer(http, prescriber, code, "P1", "accept")
    assert late.status_code == 409
    assert late.json["code"] == "proposal_not_pending" and late.json["status"] == "withdrawn"
    assert withdraw(http, lab, code, "P9").status_code == 404


def test_the_same_changes_applied_supersede_the_pending_proposal(http, prescriber, lab, code):
    propose(http, lab, code, [REPLACE_L1, REMOVE_L3])
    again = [{**REPLACE_L1, "reason": "urgence vitale"}, REMOVE_L3]
    response = propose(
        http, lab, code, again, mode="prescriber_unavailable", reason="pas de réponse"
    )
    assert response.status_code == 200, response.json
    assert [(p["id"], p["status"]) for p in response.json["proposals"]] == [
        ("P1", "superseded"),
        ("P2", "applied"),
    ]
    assert line_statuses(response.json)["L1"] == "replaced"
    types = history_types(http, prescriber, code)
    assert "proposal_superseded" in types and types[-1] == "applied_prescriber_unavailable"
    assert answer(http, prescriber, code, "P1", "accept").json["status"] == "superseded"


def test_accept_applies_the_changes_at_once(http, prescriber, lab, code):
    propose(http, lab, code, [REPLACE_L1, REMOVE_L3, ADD])
    before = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    response = answer(http, prescriber, code, "P1", "accept", comment="d'accord")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["version"] == before.json["version"] + 1
    assert response.headers["ETag"] != before.headers["ETag"]
    assert body["modified"] is True
    lines = {line["id"]: line for line in body["lines"]}
    assert lines["L1"]["status"] == "replaced" and lines["L3"]["status"] == "removed"
    assert lines["L4"] == {
        **lines["L4"],
        "loinc": "718-7",
        "replaces": "L1",
        "origin": "laboratory",
        "status": "requested",
    }
    assert lines["L5"]["loinc"] == "2345-7" and lines["L5"]["origin"] == "laboratory"
    proposal = body["proposals"][0]
    assert proposal["status"] == "accepted" and proposal["comment"] == "d'accord"
    assert proposal["answered_at"] is not None
    types = history_types(http, prescriber, code)
    assert types[-1] == "proposal_accepted" and types.count("modified") == 3
    twice = answer(http, prescriber, code, "P1", "accept")
    assert twice.status_code == 200 and twice.json["version"] == body["version"]
    assert history_types(http, prescriber, code) == types
    other_verb = answer(http, prescriber, code, "P1", "refuse", comment="non")
    assert other_verb.status_code == 409 and other_verb.json["status"] == "accepted"
    assert report(http, lab, code, "L4", "L5", "L2").json["status"] == "completed"


def test_refuse_needs_a_comment_and_changes_nothing(http, prescriber, lab, code):
    propose(http, lab, code, [REMOVE_L3])
    assert answer(http, prescriber, code, "P1", "refuse").status_code == 422
    blank = answer(http, prescriber, code, "P1", "refuse", comment="   ")
    assert blank.status_code == 422 and "comment" in blank.json["errors"]
    long = answer(http, prescriber, code, "P1", "refuse", comment="x" * 501)
    assert long.status_code == 422
    response = answer(http, prescriber, code, "P1", "refuse", comment="je maintiens")
    assert response.status_code == 200
    assert line_statuses(response.json)["L3"] == "requested"
    assert response.json["modified"] is False
    assert response.json["proposals"][0]["status"] == "refused"
    items = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    assert [item for item in items["items"] if item["type"] != "read"][-1]["detail"] == {
        "proposal": "P1",
        "comment": "je maintiens",
    }
    twice = answer(http, prescriber, code, "P1", "refuse", comment="je maintiens")
    assert twice.status_code == 200 and twice.json["version"] == response.json["version"]
    assert report(http, lab, code, "L3").status_code == 200


def test_only_its_own_prescriber_answers(http, prescriber, other_prescriber, lab, code):
    propose(http, lab, code, [REMOVE_L3])
    stranger = answer(http, other_prescriber, code, "P1", "accept")
    unknown_code = answer(http, other_prescriber, "0" * 17 + "1", "P1", "accept")
    assert stranger.status_code == 404 and unknown_code.status_code == 404
    assert stranger.json == {**unknown_code.json}
    assert answer(http, lab, code, "P1", "accept").status_code == 403
    assert answer(http, prescriber, code, "P7", "accept").status_code == 404
    assert http.get("/api/v1/proposals", headers=other_prescriber.headers).json["items"] == []


def test_the_inbox_pages_newest_first(http, prescriber, lab, other_lab):
    codes = []
    for _ in range(3):
        code = http.post(
            "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
        ).json["code"]
        http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
        propose(http, lab, code, [REMOVE_L3])
        codes.append(code)
    answer(http, prescriber, codes[0], "P1", "refuse", comment="non")
    pages, cursor = [], None
    while True:
        query = {"status": "pending", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/v1/proposals", query_string=query, headers=prescriber.headers)
        assert page.status_code == 200
        pages.append(page.json["items"])
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert [items[0]["prescription"] for items in pages] == [codes[2], codes[1]]
    assert all(len(items) == 1 and items[0]["status"] == "pending" for items in pages)
    everything = http.get("/api/v1/proposals", headers=prescriber.headers).json["items"]
    assert [item["prescription"] for item in everything] == codes[::-1]
    made = http.get("/api/v1/proposals", headers=lab.headers).json["items"]
    assert len(made) == 3
    assert http.get("/api/v1/proposals", headers=other_lab.headers).json["items"] == []
    bad = http.get("/api/v1/proposals?cursor=garbage", headers=prescriber.headers)
    assert bad.status_code == 422


def test_the_status_etag_changes_on_every_proposal_event(http, prescriber, lab, code):
    seen = {etag_of(http, prescriber, code)}
    propose(http, lab, code, [REMOVE_L3])
    seen.add(etag_of(http, prescriber, code))
    withdraw(http, lab, code, "P1")
    seen.add(etag_of(http, prescriber, code))
    propose(http, lab, code, [REMOVE_L3])
    seen.add(etag_of(http, prescriber, code))
    answer(http, prescriber, code, "P2", "accept")
    seen.add(etag_of(http, prescriber, code))
    assert len(seen) == 5
    old = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": sorted(seen)[0]},
    )
    assert old.status_code == 200


def test_the_patients_objection_does_not_hide_proposals(http, prescriber, lab):
    code = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    ).json["code"]
    http.post(
        "/api/v1/scans",
        json={"code": code, "patient_objects_to_sharing": True},
        headers=lab.headers,
    )
    report(http, lab, code, "L2")
    propose(http, lab, code, [REMOVE_L3])
    seen = http.get(f"/api/v1/prescriptions/{code}", headers=prescriber.headers).json
    assert seen["execution_withheld"] is True
    assert all(line["status"] is None for line in seen["lines"])
    assert [p["status"] for p in seen["proposals"]] == ["pending"]
    assert seen["proposals"][0]["laboratory"] is None
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["proposals"]["pending"] == 1
    assert "proposed" in history_types(http, prescriber, code)
    assert "line_done" not in history_types(http, prescriber, code)
    assert answer(http, prescriber, code, "P1", "accept").status_code == 200


def test_release_withdraws_the_pending_proposal(http, prescriber, lab, code):
    propose(http, lab, code, [REMOVE_L3])
    released = http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    assert released.json["proposals"][0]["status"] == "withdrawn"
    assert answer(http, prescriber, code, "P1", "accept").status_code == 409


def test_the_end_of_the_execution_withdraws_a_pending_addition(http, prescriber, lab, code):
    propose(http, lab, code, [ADD])
    done = report(http, lab, code, "L1", "L2", "L3")
    assert done.json["status"] == "completed"
    assert done.json["proposals"][0]["status"] == "withdrawn"


def test_a_proposed_line_carries_its_flags_into_the_history(http, prescriber, lab, code):
    line = {"loinc": "718-7", "urgent": True, "urgent_reason": "Hb à 7", "work_accident": True}
    missing = propose(
        http, lab, code, [{"op": "add", "line": {**line, "urgent_reason": None}, "reason": "r"}]
    )
    assert missing.status_code == 422
    assert list(missing.json["errors"]) == ["changes[0].line.urgent_reason"]
    propose(http, lab, code, [{"op": "add", "line": line, "reason": "contrôle"}])
    accepted = answer(http, prescriber, code, "P1", "accept")
    added = accepted.json["lines"][-1]
    assert added["urgent_reason"] == "Hb à 7" and added["work_accident"] is True
    items = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    [modified] = [item for item in items["items"] if item["type"] == "modified"]
    assert modified["detail"]["flags"] == {
        "urgent": True,
        "ald": False,
        "prevention": False,
        "work_accident": True,
        "not_reimbursable": False,
        "off_nomenclature": False,
    }
    assert modified["detail"]["urgent_reason"] == "Hb à 7"
