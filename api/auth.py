"""OAuth2 client credentials (authlib) issuing ES256 JWTs, and bearer checks on /api/v1."""

import base64
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, current_app, g, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from api.errors import Problem
from api.extensions import db_session
from api.limits import limits
from epu.actors import Actor
from epu.clients import active_actor, authenticate, revocations
from epu.settings import Settings

ISSUER = "epu"
ALGORITHM = "ES256"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class SigningKey:
    """One ES256 key derived from the master secret: every instance sharing it signs alike."""

    def __init__(self, settings: Settings):
        seed = int.from_bytes(settings.derived_key("jwt-signing-key-es256"), "big")
        private = ec.derive_private_key(seed % (P256_ORDER - 1) + 1, ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_pem).hexdigest()[:16]
        self.key = ECKey.import_key(pem, {"kid": self.kid, "use": "sig", "alg": ALGORITHM})

    def jwks(self) -> dict:
        return {"keys": [self.key.as_dict(private=False)]}


class OAuthClient(ClientMixin):
    """What authlib needs of a client: it checked its secret when it was looked up."""

    def __init__(self, client_id: str, client_pk: int, role: str):
        self.client_id, self.client_pk, self.role = client_id, client_pk, role

    def get_client_id(self):
        return self.client_id

    def check_client_secret(self, client_secret):
        return True  # authenticate() compared the secret in constant time already

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope):
        return ""


class ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _query_client(client_id: str) -> OAuthClient | None:
    # authlib looks the client up by id, then asks it to check the secret: we check both at
    # once here, where the secret is at hand, so an unknown id and a wrong secret look alike.
    auth = request.authorization
    secret = auth.password if auth and auth.type == "basic" else request.form.get("client_secret")
    client = authenticate(session=db_session(), client_id=client_id, secret=secret or "")
    db_session().rollback()
    return OAuthClient(client.client_id, client.id, client.role) if client else None


def _token_generator(signing_key: SigningKey, ttl: int) -> Callable:
    def generate(
        grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True
    ):
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": client.client_id,
            "client_id": client.client_id,
            "role": client.role,
            "iat": now,
            "exp": now + ttl,
        }
        token = jwt.encode({"alg": ALGORITHM, "kid": signing_key.kid}, claims, signing_key.key)
        token = low_s(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}

    return generate


def init_app(app: Flask, settings: Settings) -> None:
    signing_key = SigningKey(settings)
    app.extensions["epu.signing_key"] = signing_key
    app.extensions["epu.token_cache"] = TokenCache()
    app.extensions["epu.client_cache"] = ClientCache(settings.revocation_check_seconds)
    server = AuthorizationServer(app, query_client=_query_client, save_token=lambda *a: None)
    server.register_grant(ClientCredentials)
    server.register_token_generator("default", _token_generator(signing_key, settings.token_ttl))
    app.extensions["epu.oauth_server"] = server


class TokenCache:
    """Verified claims by the token's hash, until the token expires: the signature is checked
    once per token and process, and the tokens themselves are not kept in memory."""

    def __init__(self, size: int = 10_000):
        self._items: OrderedDict[bytes, dict] = OrderedDict()
        self._size, self._lock = size, Lock()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, key: bytes) -> dict | None:
        claims = self._items.get(key)
        if claims is not None and claims["exp"] <= time.time():
            return None
        return claims

    def put(self, key: bytes, claims: dict) -> None:
        with self._lock:
            self._items[key] = claims
            if len(self._items) > self._size:
                self._items.popitem(last=False)


def _signature_s(token: str) -> tuple[str, bytes, int] | None:
    head, _, signature = token.rpartition(".")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except ValueError:
        return None
    if len(raw) != 64:
        return None
    return head, raw, int.from_bytes(raw[32:], "big")


def low_s(token: str) -> str:
    """The same ES256 signature in its low-S form: (r, n - s) is also valid, and accepting both
    would let anyone mint a second token string from each one issued (RFC 6979 / BIP 62)."""
    parts = _signature_s(token)
    if parts is None or parts[2] <= P256_ORDER // 2:
        return token
    head, raw, s = parts
    signature = raw[:32] + (P256_ORDER - s).to_bytes(32, "big")
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


class ClientCache:
    """The callers this process has checked, by client id, trusted while no client has been
    revoked since: the revocation count (epu.clients.revocations) is read again at most every
    `check_seconds`, in the request's own session, so a revoked client is refused on every
    instance within that delay, at the cost of one small query per interval and process
    instead of one per request."""

    def __init__(self, check_seconds: float, size: int = 10_000):
        self._check_seconds, self._size = check_seconds, size
        self._actors: OrderedDict[str, Actor | None] = OrderedDict()
        self._revocations: tuple | None = None
        self._checked_at = float("-inf")
        self._epoch = 0  # bumped at each clearing: a lookup begun before it is not kept
        self._lock = Lock()

    def actor(self, session, client_id: str) -> Actor | None:
        if self._check_seconds <= 0:
            return active_actor(session=session, client_id=client_id)
        self._refresh(session)
        with self._lock:
            if client_id in self._actors:
                return self._actors[client_id]
            epoch = self._epoch
        actor = active_actor(session=session, client_id=client_id)
        with self._lock:
            if epoch == self._epoch:
                self._actors[client_id] = actor
                if len(self._actors) > self._size:
                    self._actors.popitem(last=False)
        return actor

    def _refresh(self, session) -> None:
        if time.monotonic() - self._checked_at < self._check_seconds:
            return
        started = time.monotonic()
        count = revocations(session=session)
        with self._lock:
            if count != self._revocations:
                self._actors.clear()
                self._epoch += 1
                self._revocations = count
            self._checked_at = max(self._checked_at, started)


def _unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    challenge = f'Bearer realm="epu", error="{error}", error_description="{detail}"'
    if error == "":
        challenge = 'Bearer realm="epu"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def verify_token(token: str) -> dict:
    cache: TokenCache = current_app.extensions["epu.token_cache"]
    token_hash = cache.key(token)
    claims = cache.get(token_hash)
    if claims is not None:
        return claims
    key: SigningKey = current_app.extensions["epu.signing_key"]
    parts = _signature_s(token)
    if parts is None or parts[2] > P256_ORDER // 2:
        raise _unauthorized("The access token is invalid or expired.")
    try:
        decoded = jwt.decode(token, key.key, algorithms=[ALGORITHM])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": ISSUER},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as error:
        raise _unauthorized("The access token is invalid or expired.") from error
    cache.put(token_hash, decoded.claims)
    return decoded.claims


def current_actor() -> Actor:
    """The caller of this request, from its bearer token; 401 when there is none or it is bad."""
    if "actor" in g:
        return g.actor
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("A bearer access token is required (POST /oauth/token).", error="")
    claims = verify_token(token.strip())
    clients: ClientCache = current_app.extensions["epu.client_cache"]
    actor = clients.actor(db_session(), claims["sub"])
    if actor is None:
        raise _unauthorized("The client of this access token has been revoked.")
    g.actor = actor
    return actor


def require(*roles: str) -> Callable:
    """Decorator: the caller must hold one of these roles (403 otherwise)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            actor = current_actor()
            limits().count_request(actor)
            if actor.role not in roles:
                raise Problem(403, f"This operation is not open to the '{actor.role}' role.")
            return view(*args, **kwargs)

        return wrapper

    return decorate
