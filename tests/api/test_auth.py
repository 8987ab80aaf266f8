import base64
import time

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import delete, event

from epu import clients
from epu.settings import Settings
from models import Client
from tests.conftest import register
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


def test_a_token_signature_is_checked_once_per_process(http, app, prescriber, monkeypatch):
    from api import auth

    checks = []
    real_decode = auth.jwt.decode
    monkeypatch.setattr(
        auth.jwt, "decode", lambda *args, **kwargs: checks.append(1) or real_decode(*args, **kwargs)
    )
    fresh = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(prescriber.client_id, prescriber.secret),
    ).json["access_token"]
    for _ in range(3):
        response = http.get("/api/v1/prescriptions", headers={"Authorization": f"Bearer {fresh}"})
        assert response.status_code == 200
    assert len(checks) == 1  # then by the token's hash, until it expires


def test_revoked_client_is_refused_once_the_check_delay_has_passed(http, app, session, prescriber):
    assert http.get("/api/v1/prescriptions", headers=prescriber.headers).status_code == 200
    assert clients.revoke_client(session=session, client_id=prescriber.client_id)

    time.sleep(app.extensions["epu.settings"].revocation_check_seconds)

    response = http.get("/api/v1/prescriptions", headers=prescriber.headers)
    assert response.status_code == 401
    assert "revoked" in response.json["detail"]
    token = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(prescriber.client_id, prescriber.secret),
    )
    assert token.status_code == 401


def test_a_checked_client_is_not_looked_up_again_while_nobody_is_revoked(
    http, app, prescriber, lab, monkeypatch
):
    # A fresh cache that reads the revocation count once here and not again during the test
    # (the clients deleted after the previous test changed that count: on a loaded machine its
    # 0.5 s interval could otherwise elapse between two of these calls).
    from api.auth import ClientCache

    monkeypatch.setitem(app.extensions, "epu.client_cache", ClientCache(3600))
    assert http.get("/api/v1/catalogue?q=nfs", headers=prescriber.headers).status_code == 200
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(app.extensions["epu.engine"], "before_cursor_execute", seen)
    try:
        again = http.get("/api/v1/catalogue?q=nfs", headers=prescriber.headers)
        first_lab_call = http.get("/api/v1/catalogue?q=nfs", headers=lab.headers)
    finally:
        event.remove(app.extensions["epu.engine"], "before_cursor_execute", seen)

    assert again.status_code == first_lab_call.status_code == 200
    lookups = [s for s in statements if "FROM clients WHERE client_id" in s]
    assert len(lookups) == 1  # the laboratory's first call only


def test_revocation_elsewhere_clears_every_checked_client(http, app, session, prescriber, lab):
    for party in (prescriber, lab):
        assert http.get("/api/v1/catalogue?q=nfs", headers=party.headers).status_code == 200
    assert clients.revoke_client(session=session, client_id=lab.client_id)

    time.sleep(app.extensions["epu.settings"].revocation_check_seconds)

    assert http.get("/api/v1/catalogue?q=nfs", headers=lab.headers).status_code == 401
    assert http.get("/api/v1/catalogue?q=nfs", headers=prescriber.headers).status_code == 200


def test_with_no_check_delay_a_revocation_applies_to_the_next_request(settings, session_factory):
    from api import create_app

    app = create_app(Settings(**{**vars(settings), "revocation_check_seconds": 0}))
    http = app.test_client()
    try:
        party = register(http, session_factory, "prescriber", "10005688790", "Dr Amélie Thomas")
        assert http.get("/api/v1/catalogue?q=nfs", headers=party.headers).status_code == 200
        with session_factory() as session:
            assert clients.revoke_client(session=session, client_id=party.client_id)
        assert http.get("/api/v1/catalogue?q=nfs", headers=party.headers).status_code == 401
    finally:
        with session_factory() as session:
            session.execute(delete(Client))
            session.commit()
        app.extensions["epu.engine"].dispose()


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
