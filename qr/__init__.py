"""QR codes of prescriptions: rendering, decoding and the printable ordonnance."""

from qr.decode import (
    ImageTooLarge,
    QRImageError,
    UnreadableImage,
    UnsupportedImage,
    decode_codes,
)
from qr.ordonnance import render_ordonnance_pdf
from qr.render import MAX_SCALE, MIN_SCALE, RENDER_VERSION, image_etag, render_png, render_svg

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "RENDER_VERSION",
    "ImageTooLarge",
    "QRImageError",
    "UnreadableImage",
    "UnsupportedImage",
    "decode_codes",
    "image_etag",
    "render_ordonnance_pdf",
    "render_png",
    "render_svg",
]
