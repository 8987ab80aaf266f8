"""`epu clients create --role nurse --rpps ...`: a nurse's account, as a real process."""

import json

import pytest
from sqlalchemy import func, select

from models import Client
from tests.e2e.support import request_token
from tests.e2e.test_cli import assert_refused, epu  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def test_a_nurse_is_created_by_rpps_and_gets_tokens(epu, server):  # noqa: F811
    result = epu("clients", "create", "--role", "nurse", "--rpps", "10101016318", "--name", "IDEL")

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert (created["role"], created["identifier"]) == ("nurse", "10101016318")
    token = request_token(server, created["client_id"], created["client_secret"])
    assert token.status_code == 200, token.text


@pytest.mark.parametrize(
    ("arguments", "mentioned"),
    [
        (["--rpps", "10101016319"], "10101016319"),  # wrong Luhn key
        (["--finess", "130000029"], "--finess"),
        ([], "--rpps"),
    ],
    ids=["rpps-luhn", "finess-for-nurse", "no-rpps"],
)
def test_a_nurse_needs_a_valid_rpps(epu, session_factory, arguments, mentioned):  # noqa: F811
    result = epu("clients", "create", "--role", "nurse", *arguments, "--name", "IDEL")

    assert_refused(result, "error: ", mentioned)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Client)) == 0
