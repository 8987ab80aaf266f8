"""Tests of the QR rendering and decoding (qr.render, qr.decode)."""

import io
import random
import struct
import time
import xml.etree.ElementTree as ET
import zlib

import pytest
import zxingcpp
from PIL import Image, ImageFile

from qr import render
from qr.decode import (
    ImageTooLarge,
    QRImageError,
    UnreadableImage,
    UnsupportedImage,
    decode_codes,
)
from qr.render import (
    MAX_SCALE,
    MIN_SCALE,
    build_symbol,
    image_etag,
    render_cache_clear,
    render_cache_info,
    render_png,
    render_svg,
)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE = "01S2TBPZ2JCNZZYGHZ"


def random_code(rng: random.Random) -> str:
    """Stand-in for the real code generator."""
    return "".join(rng.choice(ALPHABET) for _ in range(18))


def png_to(fmt: str, png: bytes, **options) -> bytes:
    """Re-encode a PNG in another Pillow format."""
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, fmt, **options)
    return out.getvalue()


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    """Serialize a Pillow image."""
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """Build a PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """Build a tiny PNG that declares width x height pixels but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def test_random_codes_round_trip_through_png():
    rng = random.Random(20261122)
    for _ in range(200):
        code = random_code(rng)
        png = render_png(code, rng.randint(2, 8))
        barcodes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
        assert [b.text for b in barcodes] == [code]
        assert barcodes[0].format == zxingcpp.BarcodeFormat.QRCode
        assert barcodes[0].ec_level in {"M", "Q", "H"}


def test_symbol_is_standard_qr_with_high_error_correction():
    symbol = build_symbol(CODE.lower())
    assert symbol.is_micro is False
    assert symbol.mode == "alphanumeric"
    assert symbol.error in {"M", "Q", "H"}
    assert symbol.designator == "2-H"


def test_png_has_four_module_white_quiet_zone():
    scale = 5
    image = Image.open(io.BytesIO(render_png(CODE, scale))).convert("L")
    side = (25 + 2 * 4) * scale
    assert image.size == (side, side)
    quiet = 4 * scale
    for box in (
        (0, 0, side, quiet),
        (0, side - quiet, side, side),
        (0, 0, quiet, side),
        (side - quiet, 0, side, side),
    ):
        assert image.crop(box).getextrema() == (255, 255)
    assert image.getpixel((quiet, quiet)) == 0  # the finder pattern starts right after


def test_svg_is_xml_with_white_background():
    svg = render_svg(CODE, 3)
    assert b"<svg" in svg
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == str(33 * 3)
    assert b'fill="#fff"' in svg


@pytest.mark.parametrize("scale", [MIN_SCALE - 1, MAX_SCALE + 1, -3, 2.5, True, "4"])
def test_scale_out_of_bounds_is_rejected(scale):
    with pytest.raises(ValueError):
        render_png(CODE, scale)
    with pytest.raises(ValueError):
        render_svg(CODE, scale)


def test_scale_bounds_are_inclusive():
    assert render_png(CODE, MIN_SCALE).startswith(b"\x89PNG")
    assert render_svg(CODE, MAX_SCALE).startswith(b"<?xml")


@pytest.mark.parametrize(
    "code", ["", "01S2TBPZ2JCNZZYGH", "01S2TBPZ2JCNZZYGHZZ", "01S2TBPZ2JCNZZYGHI"]
)
def test_invalid_code_is_rejected(code):
    with pytest.raises(ValueError):
        render_png(code)


def test_cache_returns_the_same_bytes():
    render_cache_clear()
    first = render_png(CODE, 6)
    again = render_png(CODE.lower(), 6)
    assert again is first
    assert render_cache_info().hits == 1
    assert render_svg(CODE, 6) is render_svg(CODE, 6)
    assert render_svg(CODE, 6) != first


def test_etag_is_strong_stable_and_discriminating():
    etag = image_etag(CODE, 4, "png")
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert image_etag(CODE, 4, "png") == etag
    assert image_etag(CODE.lower(), 4, "png") == etag
    others = {
        image_etag(CODE, 5, "png"),
        image_etag(CODE, 4, "svg"),
        image_etag("01S2TBPZ2JCNZZYGH0", 4, "png"),
    }
    assert etag not in others and len(others) == 3


def test_etag_changes_with_render_version(monkeypatch):
    before = image_etag(CODE, 4, "svg")
    monkeypatch.setattr(render, "RENDER_VERSION", render.RENDER_VERSION + "-next")
    assert image_etag(CODE, 4, "svg") != before


def test_etag_rejects_unknown_format_and_scale():
    with pytest.raises(ValueError):
        image_etag(CODE, 4, "gif")
    with pytest.raises(ValueError):
        image_etag(CODE, MAX_SCALE + 1, "png")


def test_decode_png():
    assert decode_codes(render_png(CODE, 6)) == [CODE]


def test_decode_jpeg():
    jpeg = png_to("JPEG", render_png(CODE, 5), quality=70)
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert decode_codes(jpeg) == [CODE]


def test_decode_png_with_transparent_background():
    out = io.BytesIO()
    build_symbol(CODE).save(out, kind="png", scale=6, border=4, light=None)
    assert Image.open(io.BytesIO(out.getvalue())).info.get("transparency") is not None
    assert decode_codes(out.getvalue()) == [CODE]


def test_decode_image_without_qr_returns_empty_list():
    rng = random.Random(7)
    noise = Image.frombytes("L", (300, 200), bytes(rng.randrange(256) for _ in range(60_000)))
    assert decode_codes(image_bytes(Image.new("RGB", (400, 300), "white"))) == []
    assert decode_codes(image_bytes(noise)) == []


def test_decode_two_codes_side_by_side():
    other = "7ZZ0XKMN4PQRS5TVWY"
    left = Image.open(io.BytesIO(render_png(CODE, 6)))
    right = Image.open(io.BytesIO(render_png(other, 6)))
    canvas = Image.new("L", (left.width + right.width + 60, left.height + 40), 255)
    canvas.paste(left, (20, 20))
    canvas.paste(right, (left.width + 40, 20))
    codes = decode_codes(image_bytes(canvas))
    assert sorted(codes) == sorted([CODE, other])


def test_decode_same_code_twice_is_reported_once():
    qr = Image.open(io.BytesIO(render_png(CODE, 6)))
    canvas = Image.new("L", (qr.width, qr.height * 2), 255)
    canvas.paste(qr, (0, 0))
    canvas.paste(qr, (0, qr.height))
    assert decode_codes(image_bytes(canvas)) == [CODE]


@pytest.mark.parametrize(
    "data",
    [
        png_to("GIF", render_png(CODE, 4)),
        png_to("BMP", render_png(CODE, 4)),
        b"01S2TBPZ2JCNZZYGHZ",
        b"",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
    ids=["gif", "bmp", "text", "empty", "svg"],
)
def test_unsupported_formats_are_rejected(data):
    with pytest.raises(UnsupportedImage):
        decode_codes(data)


def test_decompression_bomb_is_rejected_before_decoding(monkeypatch):
    def no_pixel_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixel_decoding)
    bomb = png_header_only(50_000, 50_000)
    assert len(bomb) < 100
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        decode_codes(bomb)
    assert time.perf_counter() - started < 0.5


def test_image_above_max_pixels_but_below_pillow_limit_is_rejected(monkeypatch):
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ImageTooLarge):
        decode_codes(png_header_only(8_000, 8_000))
    with pytest.raises(ImageTooLarge):
        decode_codes(render_png(CODE, 4), max_pixels=100)


def test_pillow_bomb_warning_is_turned_into_image_too_large():
    with pytest.raises(ImageTooLarge):
        decode_codes(png_header_only(10_000, 10_000), max_pixels=10**9)


def test_truncated_png_is_unreadable():
    rng = random.Random(3)
    noise = Image.frombytes("L", (200, 200), bytes(rng.randrange(256) for _ in range(40_000)))
    png = image_bytes(noise)
    with pytest.raises(UnreadableImage):
        decode_codes(png[: len(png) * 2 // 3])


def test_truncated_jpeg_is_unreadable():
    jpeg = png_to("JPEG", render_png(CODE, 8))
    with pytest.raises(UnreadableImage):
        decode_codes(jpeg[: len(jpeg) // 2])


def test_corrupt_png_is_unreadable():
    with pytest.raises(UnreadableImage):
        decode_codes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(UnreadableImage):
        decode_codes(png_header_only(100, 100))


def test_errors_share_a_base_class():
    for error in (UnsupportedImage, ImageTooLarge, UnreadableImage):
        assert issubclass(error, QRImageError)
