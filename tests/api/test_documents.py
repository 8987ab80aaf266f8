"""The prescriber's documents: the QR code images and the printable ordonnance."""

import io
import logging
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from epu.codes import for_humans
from qr.ordonnance import ALD_HEADING, NON_ALD_HEADING, SINGLE_HEADING
from qr.render import MAX_SCALE, MIN_SCALE, image_etag
from tests.factories import BLOOD_COUNT, PROLACTIN, prescription_body

IMMUTABLE = "private, max-age=31536000, immutable"
# Catalogue exams that need no clinical context, to vary the prescriptions.
EXAMS = ["57022-6", "26515-7", "718-7", "20570-8", "6690-2", "30341-2", "14196-0", "3255-7"]
UNKNOWN_CODE = "01S2TBPZ2JCNZZYGHZ"  # well formed, never issued
PATIENT_NAME = "Zoé Lefèvre-Ducasse"


def create(http, party, **overrides) -> dict:
    response = http.post(
        "/api/v1/prescriptions", json=prescription_body(**overrides), headers=party.headers
    )
    assert response.status_code == 201, response.json
    return response.json


def pdf_text(pdf: bytes) -> str:
    pages = PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


def decoded(png: bytes) -> list[str]:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert all(result.format == zxingcpp.BarcodeFormat.QRCode for result in results)
    return [result.text for result in results]


# ---- QR images ------------------------------------------------------------------------------


def test_png_holds_exactly_the_code_of_each_prescription(http, prescriber):
    codes = []
    for index in range(20):
        lines = [{"loinc": EXAMS[(index + k) % len(EXAMS)]} for k in range(1 + index % 4)]
        codes.append(create(http, prescriber, lines=lines)["code"])
    assert len(set(codes)) == 20
    for code in codes:
        response = http.get(f"/api/v1/prescriptions/{code}/qr.png", headers=prescriber.headers)
        assert response.status_code == 200
        assert response.mimetype == "image/png"
        assert decoded(response.data) == [code]


def test_code_in_the_url_is_read_as_a_person_types_it(http, prescriber):
    code = create(http, prescriber)["code"]
    typed = "-".join(for_humans(code).lower().split())
    response = http.get(f"/api/v1/prescriptions/{typed}/qr.png", headers=prescriber.headers)
    assert response.status_code == 200
    assert decoded(response.data) == [code]
    assert response.headers["ETag"] == image_etag(code, 4, "png")


def test_svg_is_svg(http, prescriber):
    code = create(http, prescriber)["code"]
    response = http.get(f"/api/v1/prescriptions/{code}/qr.svg", headers=prescriber.headers)
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.data)
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg")
    assert response.headers["ETag"] == image_etag(code, 4, "svg")


@pytest.mark.parametrize("scale", [str(MIN_SCALE - 1), str(MAX_SCALE + 1), "-3", "2.5", "x", ""])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_scale_out_of_bounds_or_not_an_integer_is_422(http, prescriber, fmt, scale):
    code = create(http, prescriber)["code"]
    response = http.get(
        f"/api/v1/prescriptions/{code}/qr.{fmt}?scale={scale}", headers=prescriber.headers
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "scale" in " ".join(response.json["errors"])


@pytest.mark.parametrize("scale", [MIN_SCALE, 7, MAX_SCALE])
def test_scale_bounds_are_inclusive_and_give_the_pixel_size(http, prescriber, scale):
    code = create(http, prescriber)["code"]
    response = http.get(
        f"/api/v1/prescriptions/{code}/qr.png?scale={scale}", headers=prescriber.headers
    )
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (33 * scale, 33 * scale)  # version 2: 25 modules and 2 x 4 of margin
    assert response.headers["ETag"] == image_etag(code, scale, "png")


def test_images_are_immutable_with_a_strong_etag_and_304(http, prescriber):
    code = create(http, prescriber)["code"]
    url = f"/api/v1/prescriptions/{code}/qr.png?scale=6"
    first = http.get(url, headers=prescriber.headers)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == IMMUTABLE
    assert etag.startswith('"') and not etag.startswith("W/")
    again = http.get(url, headers=prescriber.headers)
    assert again.headers["ETag"] == etag and again.data == first.data

    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        cached = http.get(url, headers={**prescriber.headers, "If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.data == b""
        assert cached.headers["ETag"] == etag
        assert cached.headers["Cache-Control"] == IMMUTABLE

    stale = http.get(url, headers={**prescriber.headers, "If-None-Match": '"old"'})
    assert stale.status_code == 200 and stale.data == first.data


def test_etag_differs_by_format_scale_and_code(http, prescriber):
    one, two = create(http, prescriber)["code"], create(http, prescriber)["code"]

    def etag(code, fmt, scale):
        url = f"/api/v1/prescriptions/{code}/qr.{fmt}?scale={scale}"
        return http.get(url, headers=prescriber.headers).headers["ETag"]

    etags = {etag(one, "png", 4), etag(one, "svg", 4), etag(one, "png", 5), etag(two, "png", 4)}
    assert len(etags) == 4
    # The ETag of one image does not validate another one.
    url = f"/api/v1/prescriptions/{two}/qr.png"
    headers = {**prescriber.headers, "If-None-Match": etag(one, "png", 4)}
    assert http.get(url, headers=headers).status_code == 200


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_only_the_owner_prescriber_gets_the_image(http, prescriber, other_prescriber, lab, fmt):
    code = create(http, prescriber)["code"]
    url = f"/api/v1/prescriptions/{code}/qr.{fmt}"
    etag = http.get(url, headers=prescriber.headers).headers["ETag"]
    for party in (other_prescriber, lab):
        response = http.get(url, headers=party.headers)
        assert response.status_code == 404
        assert response.json["code"] == "not_found"
        # Knowing the ETag of the image (from a cache) does not help either.
        response = http.get(url, headers={**party.headers, "If-None-Match": etag})
        assert response.status_code == 404
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 401


def test_the_laboratory_holding_it_still_gets_404(http, prescriber, lab):
    code = create(http, prescriber)["code"]
    assert http.post("/api/v1/scans", json={"code": code}, headers=lab.headers).status_code == 200
    for document in ("qr.png", "qr.svg", "ordonnance.pdf"):
        response = http.get(f"/api/v1/prescriptions/{code}/{document}", headers=lab.headers)
        assert response.status_code == 404, document


@pytest.mark.parametrize("code", [UNKNOWN_CODE, "01S2TBPZ2JCNZZYGH0", "nonsense"])
def test_unknown_or_malformed_code_is_404(http, prescriber, code):
    for document in ("qr.png", "qr.svg", "ordonnance.pdf"):
        response = http.get(f"/api/v1/prescriptions/{code}/{document}", headers=prescriber.headers)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"


# ---- the ordonnance -------------------------------------------------------------------------


def test_ordonnance_is_an_uncached_inline_pdf(http, prescriber):
    code = create(http, prescriber)["code"]
    response = http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=prescriber.headers)
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    assert response.headers["Content-Disposition"] == f'inline; filename="ordonnance-{code}.pdf"'
    assert response.headers["Cache-Control"] == "no-store"
    box = PdfReader(io.BytesIO(response.data)).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4


def test_ordonnance_text_has_the_grouped_code_every_loinc_and_label(http, prescriber):
    created = create(
        http,
        prescriber,
        lines=[
            {"loinc": BLOOD_COUNT, "urgent": True, "urgent_reason": "suspicion d'anémie"},
            {"loinc": PROLACTIN, "context": [{"code": "8665-2", "value": "2026-11-02"}]},
            {"loinc": "3255-7"},
            {"text": "Recherche de cryoglobulines"},
        ],
    )
    code = created["code"]
    response = http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=prescriber.headers)
    text = pdf_text(response.data)
    assert for_humans(code) in text
    assert "Dr Amélie Thomas" in text and "RPPS 10005688790" in text
    for line in created["lines"]:
        if line["loinc"]:
            assert f"[{line['loinc']}]" in text
            assert line["label"] and line["label"] in text
            assert f"{line['label']} [{line['loinc']}]" in text
    assert "Recherche de cryoglobulines" in text
    assert "Date des dernières règles : 02/11/2026" in text
    assert SINGLE_HEADING in text and ALD_HEADING not in text
    # Without a name, the patient block leaves a space to write it by hand.
    assert "Nom et prénom : ...." in text
    assert "Née le 01/05/1969" in text


def test_patient_name_and_birth_date_are_printed_only_when_given(http, prescriber, caplog):
    code = create(http, prescriber)["code"]
    url = f"/api/v1/prescriptions/{code}/ordonnance.pdf"
    without = pdf_text(http.get(url, headers=prescriber.headers).data)
    assert PATIENT_NAME not in without

    caplog.set_level(logging.DEBUG)
    response = http.get(
        url,
        query_string={"patient_name": PATIENT_NAME, "patient_birth_date": "1969-05-02"},
        headers=prescriber.headers,
    )
    assert response.status_code == 200
    text = pdf_text(response.data)
    assert PATIENT_NAME in text
    assert "Née le 02/05/1969" in text and "01/05/1969" not in text
    assert "Nom et prénom" not in text

    # Printed, never kept: not in the prescription, its history or the logs.
    assert PATIENT_NAME not in caplog.text and "1969-05-02" not in caplog.text
    for path in ("", "/history"):
        body = http.get(f"/api/v1/prescriptions/{code}{path}", headers=prescriber.headers)
        assert PATIENT_NAME not in body.get_data(as_text=True)
        assert "1969-05-02" not in body.get_data(as_text=True)


def test_printing_is_recorded_without_changing_the_version(http, prescriber):
    created = create(http, prescriber)
    code = created["code"]
    http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=prescriber.headers)
    history = http.get(f"/api/v1/prescriptions/{code}/history", headers=prescriber.headers).json
    assert [event["type"] for event in history["items"]] == ["created", "printed"]
    assert history["items"][1]["detail"] == {}
    status = http.get(
        f"/api/v1/prescriptions/{code}/status",
        headers={**prescriber.headers, "If-None-Match": f'"v{created["version"]}"'},
    )
    assert status.status_code == 304


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"patient_birth_date": "01/05/1969"}, "patient_birth_date"),
        ({"patient_birth_date": "1969-02-30"}, "patient_birth_date"),
        ({"patient_birth_date": "2999-01-01"}, "patient_birth_date"),
        ({"patient_name": "N" * 201}, "patient_name"),
    ],
)
def test_bad_printing_parameters_are_422_without_echoing_them(http, prescriber, query, field):
    code = create(http, prescriber)["code"]
    response = http.get(
        f"/api/v1/prescriptions/{code}/ordonnance.pdf",
        query_string=query,
        headers=prescriber.headers,
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert list(response.json["errors"]) == [f"query.{field}"]
    assert next(iter(query.values())) not in response.get_data(as_text=True)


def test_name_of_200_characters_is_accepted(http, prescriber):
    code = create(http, prescriber)["code"]
    response = http.get(
        f"/api/v1/prescriptions/{code}/ordonnance.pdf",
        query_string={"patient_name": "N" * 200},
        headers=prescriber.headers,
    )
    assert response.status_code == 200


def test_ald_lines_go_to_the_upper_zone(http, prescriber):
    created = create(
        http,
        prescriber,
        lines=[
            {"loinc": BLOOD_COUNT},
            {"loinc": "3255-7", "ald": True},
            {"text": "Recherche de cryoglobulines"},
        ],
    )
    response = http.get(
        f"/api/v1/prescriptions/{created['code']}/ordonnance.pdf", headers=prescriber.headers
    )
    text = pdf_text(response.data)
    assert SINGLE_HEADING not in text
    ald, non_ald = text.index(ALD_HEADING), text.index(NON_ALD_HEADING)
    assert ald < text.index("Fibrinogène [3255-7]") < non_ald
    assert non_ald < text.index("Numération formule sanguine [57022-6]")
    assert non_ald < text.index("Recherche de cryoglobulines")


def test_cancelled_prescription_prints_with_a_banner(http, prescriber):
    code = create(http, prescriber)["code"]
    http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "doublon"},
        headers=prescriber.headers,
    )
    response = http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=prescriber.headers)
    assert response.status_code == 200
    assert "ORDONNANCE ANNULÉE" in pdf_text(response.data)


def test_only_the_owner_prescriber_gets_the_ordonnance(http, prescriber, other_prescriber, lab):
    code = create(http, prescriber)["code"]
    url = f"/api/v1/prescriptions/{code}/ordonnance.pdf"
    assert http.get(url, headers=other_prescriber.headers).status_code == 404
    assert http.get(url, headers=lab.headers).status_code == 404
    assert http.get(url).status_code == 401


def test_openapi_documents_the_documents(http):
    spec = http.get("/api/openapi.json").json
    paths = spec["paths"]
    for fmt, media in (("png", "image/png"), ("svg", "image/svg+xml")):
        path = paths[f"/api/v1/prescriptions/{{code}}/qr.{fmt}"]
        operation = path["get"]
        assert operation["summary"]
        assert media in operation["responses"]["200"]["content"]
        assert {"ETag", "Cache-Control"} <= set(operation["responses"]["200"]["headers"])
        assert {"304", "404", "422"} <= set(operation["responses"])
        parameters = path["parameters"] + operation["parameters"]
        assert {"scale", "If-None-Match"} <= {parameter["name"] for parameter in parameters}
    operation = paths["/api/v1/prescriptions/{code}/ordonnance.pdf"]["get"]
    assert "application/pdf" in operation["responses"]["200"]["content"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"patient_name", "patient_birth_date"} <= names


def test_the_ordonnance_says_urgency_and_cover_as_the_ep_bio_model_asks(http, prescriber):
    lines = [
        {"loinc": BLOOD_COUNT, "urgent": True, "urgent_reason": "hémorragie digestive"},
        {"loinc": "3255-7", "work_accident": True},
        {"loinc": "718-7", "not_reimbursable": True},
        {"text": "Dosage de la vitamine B8", "off_nomenclature": True},
        {"loinc": "26515-7"},
    ]
    code = create(http, prescriber, lines=lines)["code"]
    response = http.get(f"/api/v1/prescriptions/{code}/ordonnance.pdf", headers=prescriber.headers)
    text = pdf_text(response.data)
    assert "URGENT : hémorragie digestive" in text
    assert text.count("En rapport avec un accident du travail ou une maladie professionnelle") == 1
    assert text.count("Non remboursable") == 1
    assert text.count("Hors nomenclature (hors NABM)") == 1
    work = text.index("accident du travail")
    assert text.rindex("[3255-7]", 0, work) > text.rindex("[57022-6]", 0, work)
    assert text.index("Non remboursable") > text.index("[718-7]")
    assert text.index("Hors nomenclature") > text.index("vitamine B8")
