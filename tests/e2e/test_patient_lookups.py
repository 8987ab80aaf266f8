"""The patient lookup on real servers: its limit is shared by two instances through Redis, and
the INS appears in no log line (access log with full request lines, at debug level)."""

import pytest

from tests.e2e.support import problem_code
from tests.factories import VALID_INS

pytestmark = pytest.mark.slow

LOOKUP_LIMIT = 3
LOGGING_EVERYTHING = {
    "EPU_LOOKUP_LIMIT": str(LOOKUP_LIMIT),
    # gunicorn's default access log format has the whole request line, query string included.
    "GUNICORN_CMD_ARGS": "--access-logfile - --log-level debug",
}


def look_up(server, party, ins: str = VALID_INS):
    return server.post(
        "/api/v1/patient-lookups",
        json={"ins": ins, "birth_date": "1969-05-01", "presence": "carte_vitale"},
        headers=party.headers,
    )


def test_lookup_limit_is_shared_by_two_instances_and_no_ins_is_logged(
    start_server, register, create_prescription
):
    a = start_server("a", redis=True, env=LOGGING_EVERYTHING)
    b = start_server("b", redis=True, env=LOGGING_EVERYTHING)
    prescriber, lab = register(a, "prescriber"), register(a, "lab")
    code = create_prescription(a, prescriber)["code"]
    invalid_ins = VALID_INS[:-2] + "00"

    answers = [look_up(server, lab) for server in (a, b, a)]
    refused_on_b, refused_on_a = look_up(b, lab), look_up(a, lab)
    invalid = look_up(b, register(b, "lab", "750000010"), ins=invalid_ins)

    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [item["code"] for item in answers[0].json()["items"]] == [code]
    for refused in (refused_on_b, refused_on_a):
        assert (refused.status_code, problem_code(refused)) == (429, "too_many_requests")
        assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert invalid.status_code == 422
    for server in (a, b):
        log = server.log_path.read_text(errors="replace")
        assert "POST /api/v1/patient-lookups" in log, "the access log was not captured"
        for ins in (VALID_INS, invalid_ins):
            assert ins not in log and ins.lower() not in log
