"""Scanning from a photo: POST /api/v1/scans as multipart/form-data with an `image` part."""

import io
import json
import random
import struct
import time
import zlib

import pypdfium2 as pdfium
import pytest
from PIL import Image

from epu.codes import check_character
from qr.render import render_png
from tests.factories import OTHER_INS, VALID_INS, prescription_body

MB = 1024 * 1024
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def create(http, party, **overrides) -> str:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(**overrides), headers=party.headers
    )
    assert response.status_code == 201, response.json
    return response.json["code"]


def page_image(http, party, code: str, dpi: int = 150) -> Image.Image:
    """Page 1 of the ordonnance as the laboratory's scanner would see it."""
    response = http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=party.headers)
    assert response.status_code == 200
    document = pdfium.PdfDocument(response.data)
    try:
        return document[0].render(scale=dpi / 72).to_pil().convert("RGB")
    finally:
        document.close()


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels but holds none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def random_code(rng: random.Random) -> str:
    data = "".join(rng.choice(ALPHABET) for _ in range(17))
    return data + check_character(data)


def scan_image(http, party, image: bytes, filename="ordonnance.png", **fields):
    form = {"image": (io.BytesIO(image), filename), **fields}
    return http.post(
        "/api/v1/scans", data=form, content_type="multipart/form-data", headers=party.headers
    )


def assert_problem(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    if code:
        assert response.json["code"] == code


# ---- done means -----------------------------------------------------------------------------


def test_the_printed_ordonnance_scanned_as_png_is_taken_by_the_laboratory(http, prescriber, lab):
    code = create(http, prescriber)
    page = page_image(http, prescriber, code, dpi=150)
    assert abs(page.width - 1240) <= 1 and abs(page.height - 1754) <= 1  # A4 at 150 dpi

    response = scan_image(http, lab, encode(page))

    assert response.status_code == 200, response.json
    assert response.json["code"] == code
    assert response.json["status"] == "in_progress"
    assert response.json["laboratory"]["finess"] == lab.identifier
    assert response.headers["ETag"] == f'"v{response.json["version"]}"'
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["status"] == "in_progress"
    assert status["laboratory"]["finess"] == lab.identifier


def test_the_printed_ordonnance_scanned_as_jpeg(http, prescriber, lab):
    code = create(http, prescriber)
    jpeg = encode(page_image(http, prescriber, code, dpi=200), "JPEG", quality=75)
    response = scan_image(http, lab, jpeg, filename="scan.jpg")
    assert response.status_code == 200, response.json
    assert response.json["code"] == code
    assert response.json["status"] == "in_progress"
    assert response.json["laboratory"]["finess"] == lab.identifier


def test_an_image_scan_is_a_json_scan(http, prescriber, lab, other_lab):
    code = create(http, prescriber)
    png = encode(page_image(http, prescriber, code))
    first = scan_image(http, lab, png)
    again = scan_image(http, lab, png)
    assert again.status_code == 200
    assert again.json["version"] == first.json["version"]  # idempotent for the holder
    json_scan = http.post("/api/v1/scans", json={"code": code}, headers=lab.headers)
    assert json_scan.json == again.json
    assert_problem(scan_image(http, other_lab, png), 409, "held_by_another_laboratory")
    http.post(f"/api/v1/prescriptions/{code}/release", headers=lab.headers)
    http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert_problem(scan_image(http, other_lab, png), 410, "cancelled")


def test_patient_ins_in_the_form_is_checked(http, prescriber, lab, other_lab):
    code = create(http, prescriber)
    png = encode(page_image(http, prescriber, code))
    mismatch = scan_image(http, lab, png, patient_ins=OTHER_INS)
    assert_problem(mismatch, 422, "patient_mismatch")
    bad = scan_image(http, lab, png, patient_ins="123")
    assert_problem(bad, 422, "validation")
    assert list(bad.json["errors"]) == ["patient_ins"]
    response = scan_image(http, lab, png, patient_ins=VALID_INS)
    assert response.status_code == 200
    assert response.json["patient"]["ins_match"] is True


def test_patient_objecting_to_sharing_in_the_form(http, prescriber, lab):
    code = create(http, prescriber)
    png = encode(page_image(http, prescriber, code))
    response = scan_image(http, lab, png, patient_ins="", patient_objects_to_sharing="true")
    assert response.status_code == 200
    assert response.json["patient"]["ins_match"] is None
    status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
    assert status["execution_withheld"] is True
    assert_problem(
        scan_image(http, lab, png, patient_objects_to_sharing="perhaps"), 422, "validation"
    )


def test_qr_of_an_unknown_code_is_404_and_counts_as_a_failed_scan(http, lab, app):
    rng = random.Random(11)
    limit = app.extensions["epu.settings"].failed_scan_limit
    for _ in range(limit):
        response = scan_image(http, lab, render_png(random_code(rng), 6))
        assert_problem(response, 404, "not_found")
    response = scan_image(http, lab, render_png(random_code(rng), 6))
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


def test_qr_holding_something_else_is_refused_as_a_typed_code_would_be(http, lab):
    import segno

    out = io.BytesIO()
    segno.make("https://example.org/not-a-prescription").save(out, kind="png", scale=6)
    assert_problem(scan_image(http, lab, out.getvalue()), 422, "invalid_code")


# ---- refusals -------------------------------------------------------------------------------


def test_no_qr_code_is_422_no_code_found(http, lab):
    blank = encode(Image.new("RGB", (1240, 1754), "white"))
    assert_problem(scan_image(http, lab, blank), 422, "no_code_found")


def test_two_different_codes_side_by_side_is_422_several_codes(http, prescriber, lab):
    one, two = create(http, prescriber), create(http, prescriber)
    left, right = page_image(http, prescriber, one), page_image(http, prescriber, two)
    both = Image.new("RGB", (left.width + right.width, left.height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    assert_problem(scan_image(http, lab, encode(both)), 422, "several_codes")
    for code in (one, two):  # neither was taken
        status = http.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers).json
        assert status["status"] == "active"


def test_the_same_code_twice_is_one_code(http, prescriber, lab):
    code = create(http, prescriber)
    qr = Image.open(io.BytesIO(render_png(code, 6)))
    twice = Image.new("L", (qr.width * 2, qr.height), 255)
    twice.paste(qr, (0, 0))
    twice.paste(qr, (qr.width, 0))
    response = scan_image(http, lab, encode(twice))
    assert response.status_code == 200
    assert response.json["code"] == code


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.open(io.BytesIO(render_png("01S2TBPZ2JCNZZYGHZ", 6))).convert("RGB"), "GIF"),
        b"01S2TBPZ2JCNZZYGHZ",
        b"",
    ],
    ids=["gif", "text", "empty"],
)
def test_an_image_that_is_not_png_or_jpeg_is_415(http, lab, data):
    # Content sniffing, whatever the file name says.
    assert_problem(scan_image(http, lab, data, filename="scan.png"), 415)


def test_a_missing_or_misnamed_part_is_415(http, lab):
    png = render_png("01S2TBPZ2JCNZZYGHZ", 6)
    for form in (
        {"photo": (io.BytesIO(png), "scan.png")},
        {"patient_ins": VALID_INS},
        {"image": [(io.BytesIO(png), "a.png"), (io.BytesIO(png), "b.png")]},
    ):
        response = http.post(
            "/api/v1/scans", data=form, content_type="multipart/form-data", headers=lab.headers
        )
        assert_problem(response, 415)


def test_an_image_over_5_mb_is_413(http, lab):
    noise = random.Random(5).randbytes(5 * MB)
    assert_problem(scan_image(http, lab, b"\x89PNG\r\n\x1a\n" + noise), 413)


def test_a_body_well_over_the_limit_is_413_before_it_is_read(http, lab):
    assert_problem(scan_image(http, lab, b"\xff\xd8\xff" + bytes(8 * MB)), 413)


def test_an_image_of_almost_5_mb_is_read(http, prescriber, lab):
    code = create(http, prescriber)
    page = page_image(http, prescriber, code, dpi=220).convert("L")
    png = encode(page, compress_level=0)  # uncompressed: 1819 x 2572 bytes
    assert 4 * MB < len(png) < 5 * MB
    response = scan_image(http, lab, png)
    assert response.status_code == 200, response.json
    assert response.json["code"] == code


def test_a_decompression_bomb_is_413_fast(http, lab):
    bomb = png_header_only(50_000, 50_000)
    started = time.perf_counter()
    response = scan_image(http, lab, bomb)
    assert time.perf_counter() - started < 1
    assert_problem(response, 413)


def test_a_corrupt_png_is_422_unreadable_image(http, lab):
    rng = random.Random(3)
    noise = Image.frombytes("L", (300, 300), rng.randbytes(90_000))
    truncated = encode(noise)[:40_000]
    assert_problem(scan_image(http, lab, truncated), 422, "unreadable_image")
    garbage = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    assert_problem(scan_image(http, lab, garbage), 422, "unreadable_image")


def test_only_laboratories_scan_and_the_image_is_not_read_without_a_token(http, prescriber, lab):
    png = render_png("01S2TBPZ2JCNZZYGHZ", 6)
    response = http.post(
        "/api/v1/scans",
        data={"image": (io.BytesIO(png), "a.png")},
        content_type="multipart/form-data",
    )
    assert_problem(response, 401)
    big = http.post(
        "/api/v1/scans",
        data={"image": (io.BytesIO(bytes(8 * MB)), "a.png")},
        content_type="multipart/form-data",
    )
    assert_problem(big, 401)
    assert_problem(scan_image(http, prescriber, png), 403)


# ---- what did not change --------------------------------------------------------------------


def test_the_json_scan_is_unchanged(http, prescriber, lab):
    code = create(http, prescriber)
    response = http.post("/api/v1/scans", json={"code": code.lower()}, headers=lab.headers)
    assert response.status_code == 200
    assert response.json["status"] == "in_progress"
    invalid = http.post("/api/v1/scans", json={"code": ""}, headers=lab.headers)
    assert_problem(invalid, 422, "validation")
    assert list(invalid.json["errors"]) == ["code"]
    malformed = http.post(
        "/api/v1/scans", data="{", content_type="application/json", headers=lab.headers
    )
    assert_problem(malformed, 400, "malformed_json")
    text = http.post("/api/v1/scans", data=code, content_type="text/plain", headers=lab.headers)
    assert_problem(text, 415)


def test_the_body_limit_stays_256_kib_for_json(http, prescriber, lab):
    body = prescription_body(clinical_context="x" * (300 * 1024))
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert_problem(response, 413)
    scan = json.dumps({"code": "01S2TBPZ2JCNZZYGHZ", "pad": "x" * (300 * 1024)})
    response = http.post(
        "/api/v1/scans", data=scan, content_type="application/json", headers=lab.headers
    )
    assert_problem(response, 413)


def test_multipart_is_refused_elsewhere(http, prescriber):
    response = http.post(
        "/api/v1/prescriptions",
        data={"image": (io.BytesIO(b"x"), "a.png")},
        content_type="multipart/form-data",
        headers=prescriber.headers,
    )
    assert_problem(response, 415)


def test_openapi_documents_both_scan_bodies(http):
    operation = http.get("/api/openapi.json").json["paths"]["/api/v1/scans"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert "$ref" in content["application/json"]["schema"]
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["image"]
    assert form["properties"]["image"]["format"] == "binary"
    assert {"413", "415", "422"} <= set(operation["responses"])


def test_images_without_a_code_count_toward_the_failed_scan_limit(http, app, settings, lab):
    from api.limits import Limits
    from epu.settings import Settings

    app.extensions["epu.limits"] = Limits(Settings(**{**vars(settings), "failed_scan_limit": 3}))
    blank = encode(Image.new("L", (400, 400), 255))
    statuses = [scan_image(http, lab, blank).status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
