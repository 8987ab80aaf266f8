"""A scan sent as a photo of the ordonnance: multipart/form-data with an `image` part.

The photo is only a way to carry the code: once its QR code is read, the scan goes on exactly as
if the code had been sent as JSON (same schema, same use case, same refusals)."""

import functools
from collections.abc import Callable
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from api.auth import current_actor
from api.blueprint import Blueprint
from api.documents.schemas import SCAN_FORM
from api.errors import Problem, flatten
from api.limits import limits
from epu import codes
from epu.errors import ValidationFailed
from qr.decode import (
    DecoderBusy,
    ImageTooLarge,
    UnreadableImage,
    UnsupportedImage,
    decode_codes,
)

MULTIPART = "multipart/form-data"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# The body may exceed the image by the boundaries, the part headers and the two small fields.
MAX_BODY_BYTES = MAX_IMAGE_BYTES + 64 * 1024
MAX_FORM_PARTS = 8
MAX_PIXELS = 40_000_000
FORM_FIELDS = ("patient_ins", "patient_objects_to_sharing")
COUNTED_AS_FAILED_SCANS = ("no_code_found", "unreadable_image")


def scan_request_body(schema: type[Schema]) -> dict[str, Any]:
    """The OpenAPI requestBody of a scan: the code as JSON, or a photo of the ordonnance."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            MULTIPART: {
                "schema": SCAN_FORM,
                "encoding": {"image": {"contentType": "image/png, image/jpeg"}},
            },
        },
    }


def json_or_image(schema: type[Schema]) -> Callable:
    """Decorator replacing @blp.arguments(schema): a JSON body is parsed exactly as before into
    `data`; a multipart body gives data=None, for the handler to read once the caller is known."""

    def decorate(view: Callable) -> Callable:
        parse_json = Blueprint.ARGUMENTS_PARSER.use_args(schema, location="json")(view)

        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if request.mimetype == MULTIPART:
                return view(None, *args, **kwargs)
            return parse_json(*args, **kwargs)

        return wrapper

    return decorate


def scan_from_image(schema: type[Schema]) -> dict[str, Any]:
    """The scan in a multipart body, as `schema` loads it from JSON: the code read in `image`,
    with the optional form fields. Refusals: 413, 415, 422 (no_code_found, several_codes,
    unreadable_image)."""
    limits().check_scans_allowed(current_actor())  # a paused laboratory costs no decoding
    request.max_content_length = MAX_BODY_BYTES
    request.max_form_parts = MAX_FORM_PARTS
    fields = {
        name: request.form[name].strip()
        for name in FORM_FIELDS
        if request.form.get(name, "").strip()
    }
    _load(schema, fields, partial=("code",))
    with limits().failed_scan_slot(current_actor()) as slot:
        try:
            code = _code_in(_image_bytes())
        except Problem as refused:
            if refused.slug in COUNTED_AS_FAILED_SCANS:  # decoding is what a guesser pays for
                slot.keep()
            raise
    return _load(schema, {**fields, "code": code})


def _load(schema: type[Schema], data: dict[str, Any], **options: Any) -> dict[str, Any]:
    try:
        return schema(**options).load(data)
    except ValidationError as error:
        raise ValidationFailed(flatten(error.messages)) from error


def _image_bytes() -> bytes:
    images = request.files.getlist("image")
    if len(images) != 1:
        raise Problem(
            415, "Send one photo of the ordonnance as the multipart part 'image' (PNG or JPEG)."
        )
    data = images[0].stream.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise Problem(413, "The image is larger than 5 MB: send a smaller photo.")
    return data


def _code_in(image: bytes) -> str:
    """The one prescription code in the image (or its one QR text, refused later as typed)."""
    try:
        texts = decode_codes(image, max_pixels=MAX_PIXELS)
    except UnsupportedImage as error:
        raise Problem(415, "The image must be a PNG or a JPEG.") from error
    except DecoderBusy as error:
        raise Problem(
            503, "Too many photos are being read: retry shortly.", headers={"Retry-After": "2"}
        ) from error
    except ImageTooLarge as error:
        raise Problem(413, f"The image is too large ({error}): send a smaller photo.") from error
    except UnreadableImage as error:
        raise Problem(
            422,
            "The image is corrupt or truncated.",
            slug="unreadable_image",
            title="Unreadable image",
        ) from error
    found = {codes.normalise(text) for text in texts if _is_code(text)}
    if len(found) > 1:
        raise Problem(
            422,
            f"The image holds {len(found)} different prescription codes: "
            "photograph one ordonnance at a time.",
            slug="several_codes",
            title="Several codes in the image",
        )
    if found:
        return found.pop()
    if len(texts) == 1:
        return texts[0]  # a QR code but no prescription code: refused as if it had been typed
    raise Problem(
        422,
        "No prescription QR code was found in the image: photograph the whole QR code, "
        "flat and sharp, or type the code printed under it.",
        slug="no_code_found",
        title="No code found",
    )


def _is_code(text: str) -> bool:
    try:
        codes.normalise(text)
    except codes.InvalidCode:
        return False
    return True
