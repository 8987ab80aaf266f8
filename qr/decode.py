"""Decoding of the QR codes found in an uploaded PNG or JPEG image."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import zxingcpp
from PIL import Image

DEFAULT_MAX_PIXELS = 40_000_000
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


class UnreadableImage(QRImageError):
    """The image is corrupt or truncated."""


def decode_codes(image_bytes: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[str]:
    """Return the distinct texts of the QR codes in a PNG or JPEG image, in decoder order."""
    # No downscaling of our own: zxing-cpp already scans a pyramid of reduced copies
    # (try_downscale) and reads a whole A4 page at 300 dpi in a few tens of milliseconds.
    return _read_texts(_load_gray(image_bytes, max_pixels))


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
    if width * height > max_pixels:
        raise ImageTooLarge(f"image has {width}x{height} pixels, more than {max_pixels}")
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
