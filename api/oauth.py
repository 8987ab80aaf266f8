from flask import Blueprint, current_app, jsonify, request

from api.limits import limits

blp = Blueprint("oauth", __name__)


@blp.post("/oauth/token")
def issue_token():
    """OAuth2 client credentials; errors follow RFC 6749 section 5.2. Repeated wrong secrets
    pause the client id and the source address for 1, 2, 4... up to 60 seconds (429)."""
    client_id, address = _client_id(), client_address()
    limits().check_token_attempt(client_id, address)
    response = current_app.extensions["epu.oauth_server"].create_token_response()
    if response.status_code == 200:
        limits().forget_token_failures(client_id)
    elif response.status_code in (400, 401) and b'"invalid_client"' in response.get_data():
        limits().count_token_failure(client_id, address)
    return response


def client_address() -> str:
    """The caller's address. Behind the front of `make run` (a Unix socket, no peer address)
    the front's X-Forwarded-For, which it sets; from anywhere else the peer itself, never a
    header a client could write."""
    if request.remote_addr:
        return request.remote_addr
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.rsplit(",", 1)[-1].strip()[:64] or "-"


def _client_id() -> str:
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username or ""
    return request.form.get("client_id", "")


@blp.get("/.well-known/jwks.json")
def jwks():
    response = jsonify(current_app.extensions["epu.signing_key"].jwks())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
