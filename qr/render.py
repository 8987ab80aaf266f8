"""QR code rendering of prescription codes (SVG and PNG)."""

from __future__ import annotations

import functools
import hashlib
import io
import re
from typing import Literal

import segno

Format = Literal["svg", "png"]

MIN_SCALE = 1
MAX_SCALE = 40
BORDER = 4
CACHE_SIZE = 4096
# Bump whenever the rendered bytes change (options, colours, layout) so that
# the ETag changes and HTTP caches drop the old images.
RENDER_VERSION = "1"

_FORMATS: tuple[Format, ...] = ("svg", "png")
_CODE_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{18}")


def normalize_code(code: str) -> str:
    """Return the code in upper case, or raise ValueError if it is not 18 Crockford base32 chars."""
    upper = code.upper()
    if not _CODE_RE.fullmatch(upper):
        raise ValueError("code must be 18 Crockford base32 characters")
    return upper


def check_scale(scale: int) -> int:
    """Return scale, or raise ValueError if it is not an int in [MIN_SCALE, MAX_SCALE]."""
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise ValueError("scale must be an integer")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be between {MIN_SCALE} and {MAX_SCALE}")
    return scale


def build_symbol(code: str) -> segno.QRCode:
    """Build a standard QR symbol, level Q at least: 18 alphanumerics get 2-H (30 % recovery)."""
    # Level Q is asked for and boost_error raises it to H when the version stays the
    # same: version 2 either way (25x25 modules), so the extra robustness against folds,
    # stains and screen glare costs no size.
    return segno.make(normalize_code(code), micro=False, error="q", boost_error=True)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _render(code: str, scale: int, fmt: Format) -> bytes:
    """Serialize the symbol; cached because the output only depends on the arguments."""
    out = io.BytesIO()
    options: dict[str, object] = {"kind": fmt, "scale": scale, "border": BORDER}
    if fmt == "svg":
        # An explicit white background keeps the quiet zone on dark pages.
        options["light"] = "#fff"
    build_symbol(code).save(out, **options)
    return out.getvalue()


def render_svg(code: str, scale: int = 4) -> bytes:
    """Render the code as an SVG QR code with a 4-module quiet zone."""
    return _render(normalize_code(code), check_scale(scale), "svg")


def render_png(code: str, scale: int = 4) -> bytes:
    """Render the code as a 1-bit PNG QR code with a 4-module quiet zone."""
    return _render(normalize_code(code), check_scale(scale), "png")


def image_etag(code: str, scale: int, fmt: str) -> str:
    """Return a strong ETag (quoted) for the image of code at scale in fmt."""
    if fmt not in _FORMATS:
        raise ValueError(f"format must be one of {', '.join(_FORMATS)}")
    key = f"{RENDER_VERSION}|{segno.__version__}|{fmt}|{check_scale(scale)}|{normalize_code(code)}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def render_cache_info() -> functools._CacheInfo:
    """Return the hit/miss statistics of the rendered-image cache."""
    return _render.cache_info()


def render_cache_clear() -> None:
    """Empty the rendered-image cache."""
    _render.cache_clear()
