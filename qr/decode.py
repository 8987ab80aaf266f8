"""Decoding of the QR codes found in an uploaded PNG or JPEG image."""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib

import zxingcpp
from PIL import Image

DEFAULT_MAX_PIXELS = 40_000_000
PNG_MAX_PIXELS = 16_000_000  # an A4 page at 400 dpi; a PNG is decoded whole (RGBA: 64 MB)
DECODED_PIXELS = 12_000_000  # a JPEG larger than this is decoded at 1/2, 1/4 or 1/8 scale
CONCURRENT_DECODES = 2
DECODE_WAIT = 10.0  # seconds
_decodes = threading.BoundedSemaphore(CONCURRENT_DECODES)
MAX_SIDE = 65_535  # the decoder's limit on either side

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
}
# Pillow reports JPEGs with a multi-picture extension (most phone cameras) as MPO.
_ACCEPTED_FORMATS = {"PNG", "JPEG", "MPO"}
_QR_FORMATS = zxingcpp.BarcodeFormat.QRCode
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class QRImageError(Exception):
    """Base class of the errors raised for an image that cannot be scanned."""


class UnsupportedImage(QRImageError):
    """The bytes are not a PNG or JPEG image."""


class ImageTooLarge(QRImageError):
    """The image declares more pixels than allowed."""


class DecoderBusy(QRImageError):
    """Every decoding slot of this process stayed taken for DECODE_WAIT seconds."""


class UnreadableImage(QRImageError):
    """The image is corrupt or truncated."""


def decode_codes(image_bytes: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[str]:
    """Return the distinct texts of the QR codes in a PNG or JPEG image, in decoder order.

    Memory is bounded: a JPEG is decoded at a reduced scale (its DCT allows it) down to
    DECODED_PIXELS, a PNG (which cannot be) may hold at most PNG_MAX_PIXELS, and at most
    CONCURRENT_DECODES images are decoded at once per process (DecoderBusy after a wait)."""
    if not _decodes.acquire(timeout=DECODE_WAIT):
        raise DecoderBusy("too many images are being decoded; retry shortly")
    try:
        return _read_texts(_load_gray(image_bytes, max_pixels))
    finally:
        _decodes.release()


def _sniff_format(image_bytes: bytes) -> str:
    """Return the format named by the magic bytes, or raise UnsupportedImage."""
    for signature, fmt in _SIGNATURES.items():
        if image_bytes.startswith(signature):
            return fmt
    raise UnsupportedImage("only PNG and JPEG images are accepted")


def _open_lazily(image_bytes: bytes, max_pixels: int) -> Image.Image:
    """Open the image reading its header only, and check its declared size."""
    fmt = _sniff_format(image_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _PIL_DECODE_ERRORS as exc:
        raise UnreadableImage(f"cannot read {fmt} image") from exc
    if image.format not in _ACCEPTED_FORMATS:
        raise UnsupportedImage("only PNG and JPEG images are accepted")
    width, height = image.size
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageTooLarge(f"image is {width}x{height} pixels, wider or taller than {MAX_SIDE}")
    limit = min(max_pixels, PNG_MAX_PIXELS) if image.format == "PNG" else max_pixels
    if width * height > limit:
        raise ImageTooLarge(f"image has {width}x{height} pixels, more than {limit}")
    if image.format != "PNG" and width * height > DECODED_PIXELS:
        scale = 2
        while width * height // (scale * scale) > DECODED_PIXELS and scale < 8:
            scale *= 2
        image.draft("L", (width // scale, height // scale))  # decoded at that scale, in gray
    return image


def _load_gray(image_bytes: bytes, max_pixels: int) -> Image.Image:
    """Decode the pixels of a size-checked image into 8-bit grayscale on white."""
    image = _open_lazily(image_bytes, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return _to_gray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc)) from exc
    except _PIL_DECODE_ERRORS as exc:
        raise UnreadableImage("corrupt or truncated image") from exc


def _to_gray(image: Image.Image) -> Image.Image:
    """Convert to mode L, flattening transparency onto white (else it would turn black)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")


def _read_texts(image: Image.Image) -> list[str]:
    """Run zxing-cpp on the image and return the distinct stripped texts."""
    texts: list[str] = []
    for barcode in zxingcpp.read_barcodes(image, formats=_QR_FORMATS):
        text = barcode.text.strip()
        if text and text not in texts:
            texts.append(text)
    return texts
