from flask import Blueprint, current_app, jsonify

blp = Blueprint("oauth", __name__)


@blp.post("/oauth/token")
def issue_token():
    """OAuth2 client credentials; errors follow RFC 6749 section 5.2."""
    return current_app.extensions["epu.oauth_server"].create_token_response()


@blp.get("/.well-known/jwks.json")
def jwks():
    response = jsonify(current_app.extensions["epu.signing_key"].jwks())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
