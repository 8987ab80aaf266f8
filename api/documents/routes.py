"""Images and printouts of a prescription for its prescriber: the QR code and the ordonnance."""

from datetime import UTC, datetime

from flask import Response, current_app, request

from api.auth import current_actor, require
from api.blueprint import Blueprint
from api.docs import WITH_QUERY, refusals
from api.documents.printing import RenderCache
from api.documents.schemas import BINARY, OrdonnanceQuery, QrQuery
from api.extensions import db_session
from epu import catalogue, prescriptions, sampling_sheet
from epu.actors import LAB, PRESCRIBER
from qr import image_etag, render_ordonnance_pdf, render_png, render_svg

blp = Blueprint(
    "documents",
    __name__,
    url_prefix="/api/v1/prescriptions",
    description="The QR code and the printable ordonnance, for the prescriber who wrote it",
)

# The image of a code never changes (the ETag names the rendering version); private because it
# is served behind a bearer token.
IMMUTABLE = "private, max-age=31536000, immutable"
IMAGE_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "Strong; the same for ever"},
    "Cache-Control": {"schema": {"type": "string", "example": IMMUTABLE}},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "ETag of an image already held: answered 304",
}
NOT_FOUND = "No such prescription of the caller's (laboratories included)"
RENDERERS = {"svg": (render_svg, "image/svg+xml"), "png": (render_png, "image/png")}


@blp.get("/<code>/qr.svg", parameters=[IF_NONE_MATCH])
@blp.arguments(QrQuery, location="query")
@blp.response(
    200,
    {"type": "string"},
    content_type="image/svg+xml",
    headers=IMAGE_HEADERS,
    description="The QR code holding the 18-character code",
)
@blp.alt_response(304, description="Not modified: the image in If-None-Match is current")
@refusals(blp, {404: NOT_FOUND}, WITH_QUERY)
@require(PRESCRIBER, LAB)
def qr_svg(query, code):
    """The prescription's QR code as SVG (immutable: cache it)"""
    return _qr_image(code, query["scale"], "svg")


@blp.get("/<code>/qr.png", parameters=[IF_NONE_MATCH])
@blp.arguments(QrQuery, location="query")
@blp.response(
    200,
    BINARY,
    content_type="image/png",
    headers=IMAGE_HEADERS,
    description="The QR code holding the 18-character code",
)
@blp.alt_response(304, description="Not modified: the image in If-None-Match is current")
@refusals(blp, {404: NOT_FOUND}, WITH_QUERY)
@require(PRESCRIBER, LAB)
def qr_png(query, code):
    """The prescription's QR code as PNG (immutable: cache it)"""
    return _qr_image(code, query["scale"], "png")


def _qr_image(code: str, scale: int, fmt: str) -> Response:
    # The owner is checked in the database on every request, cached image or not.
    code = prescriptions.owned_code(session=db_session(), actor=current_actor(), code=code)
    etag = image_etag(code, scale, fmt)
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if request.if_none_match.contains_weak(etag.strip('"')):
        return Response(status=304, headers=headers)
    render, mimetype = RENDERERS[fmt]
    return Response(render(code, scale), mimetype=mimetype, headers=headers)


@blp.get("/<code>/ordonnance.pdf")
@blp.arguments(OrdonnanceQuery, location="query")
@blp.response(
    200,
    BINARY,
    content_type="application/pdf",
    headers={
        "Content-Disposition": {"schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string", "example": "no-store"}},
    },
    description="The A4 ordonnance (recorded as 'printed' in the history)",
)
@refusals(
    blp, {404: NOT_FOUND, 429: "Too many requests, or an ordonnance being rendered"}, WITH_QUERY
)
@require(PRESCRIBER, LAB)
def ordonnance(query, code):
    """The printable A4 ordonnance with its QR code; a patient name given is printed, not kept"""
    actor = current_actor()
    body = prescriptions.for_document(session=db_session(), actor=actor, code=code)
    birth_date = query.get("patient_birth_date")
    name = (query.get("patient_name") or "").strip() or None
    birth = birth_date.isoformat() if birth_date else None
    groups, sheet = None, ""
    if query["sampling_sheet"]:
        current = catalogue.current(db_session())
        db_session().rollback()
        groups, sheet = sampling_sheet.specimen_groups(body, current), current.version_id
    key = RenderCache.key(body["code"], body["version"], body["status"], name, birth, sheet)
    pdf = current_app.extensions.setdefault("epu.pdf_cache", RenderCache()).get_or_render(
        key,
        actor.client_pk,
        lambda: render_ordonnance_pdf(
            body,
            patient_name=name,
            patient_birth_date=birth,
            issued_at=datetime.now(UTC),
            sampling_sheet=groups,
        ),
    )
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="ordonnance-{body["code"]}.pdf"',
            "Cache-Control": "no-store",
        },
    )
