"""Headers every client and cache relies on, and ES256 signatures in their one (low-S) form."""

import base64

import pytest

from api.auth import P256_ORDER
from tests.factories import prescription_body


def test_every_answer_says_nosniff_and_authenticated_json_is_not_stored(http, prescriber):
    created = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    )
    code = created.json["code"]
    for path in (
        f"/api/v1/prescriptions/{code}",
        f"/api/v1/prescriptions/{code}/status",
        "/api/v1/prescriptions/0000/status",  # a refusal too
        f"/fhir/Task/{code}",
    ):
        response = http.get(path, headers=prescriber.headers)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Cache-Control"] == "no-store, private", path
    image = http.get(f"/api/v1/prescriptions/{code}/qr.png", headers=prescriber.headers)
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        "private" in image.headers["Cache-Control"] and "max-age" in image.headers["Cache-Control"]
    )
    assert http.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/api/v1/prescriptions", "/fhir/metadata"])
def test_405_says_which_methods_are_allowed(http, prescriber, path):
    response = http.delete(path, headers=prescriber.headers)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def signature_s(token: str) -> int:
    signature = token.rsplit(".", 1)[1]
    return int.from_bytes(base64.urlsafe_b64decode(signature + "==")[32:], "big")


def high_s_twin(token: str) -> str:
    head, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    twin = raw[:32] + (P256_ORDER - s).to_bytes(32, "big")
    return head + "." + base64.urlsafe_b64encode(twin).rstrip(b"=").decode()


def test_tokens_are_issued_low_s_and_their_high_s_twin_is_refused(http, session_factory):
    from tests.conftest import register

    for n in range(8):  # s is random: eight tokens all low-S
        party = register(http, session_factory, "lab", "130000029", f"Laboratoire {n}")
        assert signature_s(party.token) <= P256_ORDER // 2
        assert http.get("/api/v1/catalogue?q=fer", headers=party.headers).status_code == 200
        twin = {"Authorization": f"Bearer {high_s_twin(party.token)}"}
        assert http.get("/api/v1/catalogue?q=fer", headers=twin).status_code == 401
