"""The HTTP layer: the only package that imports Flask."""

from http import HTTPStatus

from flask import Flask, Response, request
from flask_smorest import Api

from api import auth, bodies, errors, fhir, limits
from api.errors import PROBLEM, Problem
from api.extensions import close_db_session
from api.proxies import TrustedProxies
from api.schemas import ProblemSchema
from epu.audit import RepeatedReads
from epu.prescriptions import ReadMemory
from epu.settings import Settings
from models.db import make_engine, make_session_factory

JSON_TYPES = ("application/json", "application/merge-patch+json")
MULTIPART_PATHS = ("/api/v1/scans", "/api/v1/samplings/scan")  # a photo of the ordonnance


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="EPU - e-prescription unifiée",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs/static/",
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "oauth2",
                        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
                    }
                }
            },
            "security": [{"bearer": []}],
        },
    )
    engine = make_engine(
        settings.database_url,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )
    app.extensions["epu.settings"] = settings
    app.extensions["epu.engine"] = engine
    app.extensions["epu.sessions"] = make_session_factory(engine)
    app.extensions["epu.ins_key"] = settings.derived_key("ins-pseudonym")
    app.extensions["epu.read_memory"] = ReadMemory(RepeatedReads(settings.read_count_flush_seconds))
    app.teardown_appcontext(close_db_session)
    auth.init_app(app, settings)
    limits.init_app(app, settings)
    _register_blueprints(app)
    errors.register(app)
    fhir.register_error_handlers(app)  # after errors.register: /fhir errors as OperationOutcome
    app.before_request(bodies.check_request)
    app.before_request(_require_json_body)
    app.after_request(_protocol_headers)
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)
    return app


def _register_blueprints(app: Flask) -> None:
    from api import health, oauth
    from api.catalogue.routes import blp as catalogue
    from api.documents.routes import blp as documents
    from api.laboratory.routes import blp as laboratory
    from api.lookups.routes import blp as lookups
    from api.prescriptions.routes import blp as prescriptions
    from api.proposals.routes import blp as proposals
    from api.samplings.routes import blp as samplings
    from api.subscriptions.routes import blp as subscriptions

    api = EpuApi(app)
    app.extensions["epu.api"] = api
    for blueprint in (catalogue, prescriptions, laboratory, documents, proposals, subscriptions):
        api.register_blueprint(blueprint)
    api.register_blueprint(lookups)
    api.register_blueprint(samplings)
    app.register_blueprint(health.blp)
    app.register_blueprint(oauth.blp)
    fhir.init_app(app)


class EpuApi(Api):
    """flask-smorest, documenting errors as problem+json and only the statuses we answer."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self):
        for status in HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["content"] = {PROBLEM: {"schema": ProblemSchema}}
            self.spec.components.response(status.name, response, lazy=True)


NO_STORE_TYPES = ("application/json", "application/problem+json", "application/fhir+json")


def _protocol_headers(response: Response) -> Response:
    """Nothing is sniffed; what a token gave is kept by no shared cache and no disk."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.headers.get("Cache-Control") == "no-store":
        return response  # the token endpoint's, as RFC 6749 writes it
    if response.mimetype in NO_STORE_TYPES and (
        "Authorization" in request.headers or request.path.startswith(("/api/v1", "/fhir/"))
    ):
        response.headers["Cache-Control"] = "no-store, private"
    return response


def _require_json_body() -> None:
    if not request.path.startswith("/api/v1") or request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.mimetype == "multipart/form-data" and request.path in MULTIPART_PATHS:
        return  # read by its handler, under that route's own size limit
    if request.content_length == 0 or (request.content_length is None and not request.data):
        return
    if request.mimetype not in JSON_TYPES:
        raise Problem(
            415, f"Send the body as application/json, not {request.mimetype or 'nothing'}."
        )
