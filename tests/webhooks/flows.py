"""The prescription steps the webhook tests drive, through the JSON API."""

from tests.factories import prescription_body

RENEWED_BODY = {"lines": [{"loinc": "57022-6", "renewals": 1}, {"text": "Cryoglobulines"}]}


def create(http, prescriber, **overrides) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(**overrides), headers=prescriber.headers
    )
    assert response.status_code == 201, response.json
    return response.json["code"]


def scan(http, lab, code, **extra) -> dict:
    response = http.post("/api/v1/scans", json={"code": code, **extra}, headers=lab.headers)
    assert response.status_code == 200, response.json
    return response.json


def done(http, lab, code, *line_ids, outcome="done") -> dict:
    lines = [{"line_id": line_id, "outcome": outcome, "reason": "hémolysé"} for line_id in line_ids]
    response = http.post(
        f"/api/v1/prescriptions/{code}/done", json={"lines": lines}, headers=lab.headers
    )
    assert response.status_code == 200, response.json
    return response.json


def modify(http, lab, code, version: int) -> dict:
    response = http.patch(
        f"/api/v1/prescriptions/{code}",
        json={
            "changes": [{"op": "add", "line": {"text": "Ferritine"}, "reason": "bilan"}],
            "mode": "urgent",  # applied at once (a proposal, the default, answers 202)
        },
        headers={**lab.headers, "If-Match": f'"v{version}"'},
    )
    assert response.status_code == 200, response.json
    return response.json


def release(http, lab, code) -> None:
    response = http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    assert response.status_code == 200, response.json


def cancel(http, prescriber, code) -> None:
    response = http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert response.status_code == 200, response.json
