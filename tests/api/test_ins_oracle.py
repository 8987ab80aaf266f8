"""Scanning with patient_ins must not confirm guessed INS: mismatches are limited per
prescription (5 an hour) and per laboratory (20 an hour), recorded and shown to the prescriber."""

from tests.factories import OTHER_INS, VALID_INS, ins_with_key, prescription_body


def create(http, prescriber) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    assert response.status_code == 201
    return response.json["code"]


def scan(http, lab, code, ins=None):
    body = {"code": code, **({"patient_ins": ins} if ins else {})}
    return http.post("/api/v1/scans", json=body, headers=lab.headers)


def guesses(count: int) -> list[str]:
    return [ins_with_key(f"2690599{n:06d}") for n in range(count)]


def test_after_five_mismatches_the_ins_check_of_the_prescription_answers_429(
    http, prescriber, lab, other_lab
):
    code = create(http, prescriber)
    answers = [scan(http, lab, code, ins) for ins in guesses(5)]
    assert [answer.json["code"] for answer in answers] == ["patient_mismatch"] * 5
    paused = scan(http, other_lab, code, VALID_INS)  # even the right INS, from anyone
    assert paused.status_code == 429
    assert paused.json["code"] == "ins_checks_paused"
    assert 3500 <= int(paused.headers["Retry-After"]) <= 3601
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers)
    types = [event["type"] for event in history.json["items"]]
    assert types.count("ins_mismatch") == 5
    assert types.count("ins_checks_paused") == 1
    taken = scan(http, lab, code)  # without the INS, the laboratory still takes charge
    assert taken.status_code == 200


def test_a_laboratory_guessing_across_prescriptions_is_paused_after_twenty(http, prescriber, lab):
    codes = [create(http, prescriber) for _ in range(6)]
    statuses = [
        scan(http, lab, codes[n // 4], ins).status_code for n, ins in enumerate(guesses(20))
    ]
    assert statuses == [422] * 20
    refused = scan(http, lab, codes[5], OTHER_INS)
    assert refused.status_code == 429
    assert refused.json["code"] == "ins_checks_paused"


def test_matching_ins_are_not_counted(http, prescriber, lab):
    for _ in range(7):
        code = create(http, prescriber)
        response = scan(http, lab, code, VALID_INS)
        assert response.status_code == 200
        assert response.json["patient"]["ins_match"] is True
