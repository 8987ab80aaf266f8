"""FHIR R4 interface (/fhir): a wire format over the same domain as the JSON API."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the /fhir blueprint (its own OperationOutcome error handlers come with it)."""
    from api.fhir import proposals
    from api.fhir.routes import blp
    from api.fhir.subscriptions import blp as subscriptions

    proposals.init_app(app)  # first: its Task/<code>-<proposal id> rules are the narrower ones
    app.register_blueprint(blp)
    app.register_blueprint(subscriptions)


def register_error_handlers(app: Flask) -> None:
    """After api.errors.register: unrouted /fhir requests (404, 405) get an OperationOutcome."""
    from api.fhir.outcome import register_app_handlers

    register_app_handlers(app)
