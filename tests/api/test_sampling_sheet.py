"""The ordonnance's sampling sheet (?sampling_sheet=true): text read back from the PDF, QR code
decoded by zxing-cpp from the rendered page."""

import io

import pypdfium2 as pdfium
from pypdf import PdfReader

from epu.codes import for_humans
from qr.decode import decode_codes
from tests.factories import prescription_body

LINES = [
    {"loinc": "57022-6"},  # numération formule sanguine: not in the mapping, no specimen
    {"loinc": "2160-0", "sampling_instructions": "Garrot bref"},  # créatinine: serum
    {"loinc": "3016-3", "urgent": True, "urgent_reason": "suspicion de thyrotoxicose"},  # TSH
    {"loinc": "5902-2"},  # temps de Quick
    {"text": "Recherche de cryoglobulines"},
]


def ordonnance(http, prescriber, **query):
    body = prescription_body(lines=LINES)
    code = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers).json["code"]
    path = f"/api/v1/prescriptions/{code}/ordonnance.pdf"
    response = http.get(path, query_string=query, headers=prescriber.headers)
    assert response.status_code == 200, response.get_data()
    return code, response.data


def test_the_sampling_sheet_groups_the_lines_by_specimen_with_boxes_to_fill(http, prescriber):
    code, pdf = ordonnance(http, prescriber, sampling_sheet="true")

    reader = PdfReader(io.BytesIO(pdf))
    sheet = reader.pages[-1].extract_text()

    assert len(reader.pages) == 2
    assert "Fiche de prélèvement" in sheet and for_humans(code) in sheet
    assert "Sérum (SER)" in sheet
    serum = sheet.index("Sérum (SER)")
    assert serum < sheet.index("Créatinine") and serum < sheet.index("Garrot bref")
    assert "URGENT" in sheet
    assert sheet.index("Autres examens") < sheet.index("Recherche de cryoglobulines")
    for box in ("Date du prélèvement", "Heure", "Signature"):
        assert box in sheet


def test_the_sampling_sheets_qr_code_decodes_to_the_prescription_code(http, prescriber):
    code, pdf = ordonnance(http, prescriber, sampling_sheet="true")

    document = pdfium.PdfDocument(pdf)
    try:
        image = document[len(document) - 1].render(scale=150 / 72).to_pil().convert("RGB")
    finally:
        document.close()
    png = io.BytesIO()
    image.save(png, "PNG")

    assert decode_codes(png.getvalue(), max_pixels=40_000_000) == [code]


def test_without_the_parameter_there_is_no_sampling_sheet(http, prescriber):
    _, pdf = ordonnance(http, prescriber)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Fiche de prélèvement" not in text
