import base64
import time

from joserfc import jwt
from joserfc.jwk import ECKey

from epu import clients
from tests.factories import prescription_body


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_token_by_http_basic_and_by_form_body(http, prescriber):
    by_basic = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(prescriber.client_id, prescriber.secret),
    )
    by_form = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": prescriber.client_id,
            "client_secret": prescriber.secret,
        },
    )
    for response in (by_basic, by_form):
        assert response.status_code == 200
        assert response.json["token_type"] == "Bearer"
        assert response.json["expires_in"] == 3600
        assert response.headers["Cache-Control"] == "no-store"


def test_wrong_secret_and_unknown_client_are_refused_alike(http, prescriber):
    wrong = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(prescriber.client_id, "nope"),
    )
    unknown = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("epu-prescriber-0000", "nope"),
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json


def test_other_grant_types_are_refused(http, prescriber):
    response = http.post(
        "/oauth/token",
        data={"grant_type": "password"},
        headers=basic(prescriber.client_id, prescriber.secret),
    )
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"


def test_token_is_an_es256_jwt_verifiable_with_the_published_keys(http, prescriber):
    jwks = http.get("/.well-known/jwks.json").json
    assert jwks["keys"][0]["alg"] == "ES256"
    key = ECKey.import_key(jwks["keys"][0])
    claims = jwt.decode(prescriber.token, key).claims
    assert claims["role"] == "prescriber"
    assert claims["exp"] > time.time()


def test_two_app_instances_sharing_the_secret_accept_each_others_tokens(settings, prescriber):
    from api import create_app

    other_instance = create_app(settings).test_client()
    response = other_instance.get("/api/v1/prescriptions", headers=prescriber.headers)
    assert response.status_code == 200


def test_missing_bad_and_expired_tokens_get_401_with_www_authenticate(http, app, prescriber):
    key = app.extensions["epu.signing_key"]
    expired = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {"iss": "epu", "sub": "1", "role": "prescriber", "exp": int(time.time()) - 5},
        key.key,
    )
    forged = prescriber.token[:-4] + ("AAAA" if not prescriber.token.endswith("AAAA") else "BBBB")
    for headers in (
        {},
        {"Authorization": "Bearer garbage"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Basic abc"},
    ):
        response = http.get("/api/v1/prescriptions", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.mimetype == "application/problem+json"


def test_revoked_client_tokens_stop_working_at_once(http, session, prescriber):
    assert http.get("/api/v1/prescriptions", headers=prescriber.headers).status_code == 200
    assert clients.revoke_client(session=session, client_id=prescriber.client_id)
    response = http.get("/api/v1/prescriptions", headers=prescriber.headers)
    assert response.status_code == 401
    token = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(prescriber.client_id, prescriber.secret),
    )
    assert token.status_code == 401


def test_roles_are_least_privilege(http, prescriber, lab):
    assert (
        http.post(
            "/api/v1/prescriptions", json=prescription_body(), headers=lab.headers
        ).status_code
        == 403
    )
    assert http.get("/api/v1/prescriptions", headers=lab.headers).status_code == 403
    assert (
        http.post("/api/v1/scans", json={"code": "x"}, headers=prescriber.headers).status_code
        == 403
    )
    assert http.get("/api/v1/catalogue?q=nfs", headers=lab.headers).status_code == 200


def test_secrets_are_stored_hashed(session, prescriber):
    from models import Client

    stored = session.query(Client).filter_by(client_id=prescriber.client_id).one()
    assert prescriber.secret not in stored.secret_hash
    assert stored.secret_hash == clients.hash_secret(prescriber.secret)
