"""Tests of the printable ordonnance (qr.ordonnance)."""

import copy
import io
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader

from qr.decode import decode_codes
from qr.ordonnance import ALD_HEADING, NON_ALD_HEADING, TITLE, render_ordonnance_pdf

CODE = "01S2TBPZ2JCNZZYGHZ"
GROUPED = "01S2 TBPZ 2JCN ZZYG HZ"
ISSUED = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)
FREE_TEXT = "Recherche de Chlamydia trachomatis par PCR sur auto-prélèvement"


def make_line(line_id: str, **fields) -> dict:
    """Build a prescription line in the API's JSON shape."""
    line = {
        "id": line_id,
        "loinc": None,
        "label": None,
        "text": None,
        "context": [],
        "urgent": False,
        "ald": False,
        "prevention": False,
        "renewals": 0,
        "renewals_left": 0,
        "patient_instructions": [],
        "sampling_instructions": None,
        "comment": None,
        "status": "requested",
        "origin": "prescriber",
    }
    line.update(fields)
    return line


def make_prescription(*, ald: bool = True) -> dict:
    """Build a prescription with a LOINC line, an Œstradiol line, a free-text and a removed line."""
    return {
        "code": CODE,
        "status": "active",
        "created_at": "2026-11-22T10:00:00Z",
        "prescriber": {"rpps": "10005688790", "name": "Dr Amélie Thomas"},
        "patient": {"sex": "female", "birth_date": "1980-05-01", "ins_verified": True},
        "clinical_context": "Asthénie depuis 3 mois",
        "lines": [
            make_line(
                "L1",
                loinc="57022-6",
                label="Numération formule sanguine",
                urgent=True,
                ald=ald,
                renewals=2,
                renewals_left=2,
                patient_instructions=[{"code": "MED-1160", "label": "A jeûn"}],
            ),
            make_line(
                "L2",
                loinc="2243-4",
                label="Œstradiol (E2)",
                context=[
                    {"code": "8665-2", "label": "Date des dernières règles", "value": "2026-11-02"}
                ],
                sampling_instructions="Prélever entre J2 et J5 du cycle",
                comment="β-HCG négatif",
            ),
            make_line("L3", text=FREE_TEXT, prevention=True),
            make_line("L4", loinc="2345-7", label="Glycémie à jeun", status="removed"),
            make_line("L5", loinc="1742-6", label="ALAT", status="replaced"),
        ],
    }


def pdf_text(pdf: bytes) -> str:
    """Extract the text of every page with whitespace collapsed."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


@pytest.fixture(scope="module")
def ald_text() -> str:
    return pdf_text(render_ordonnance_pdf(make_prescription(), issued_at=ISSUED))


def test_is_a4_pdf():
    pdf = render_ordonnance_pdf(make_prescription(), issued_at=ISSUED)
    assert pdf.startswith(b"%PDF-")
    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)


def test_header_mentions(ald_text):
    assert TITLE in ald_text
    assert "Ordonnance d'examens de biologie médicale" in ald_text
    assert "Dr Amélie Thomas" in ald_text
    assert "RPPS 10005688790" in ald_text
    assert "Date de prescription : 22/11/2026" in ald_text
    assert GROUPED in ald_text
    assert "Présentez cette ordonnance au laboratoire" in ald_text
    assert "Contexte clinique : Asthénie depuis 3 mois" in ald_text
    assert "RGPD" in ald_text
    assert "aucune donnée d'identité du patient" in ald_text.lower()


def test_lines_with_loinc_codes_and_details(ald_text):
    assert "Numération formule sanguine [57022-6]" in ald_text
    assert "Œstradiol (E2) [2243-4]" in ald_text
    assert FREE_TEXT in ald_text
    assert "Date des dernières règles : 02/11/2026" in ald_text
    assert "A jeûn" in ald_text
    assert "Consignes de prélèvement : Prélever entre J2 et J5 du cycle" in ald_text
    assert "Commentaire : β-HCG négatif" in ald_text
    assert "À renouveler 2 fois" in ald_text
    assert ald_text.count("URGENT") == 1


def test_removed_and_replaced_lines_are_not_printed(ald_text):
    assert "Glycémie" not in ald_text
    assert "2345-7" not in ald_text
    assert "ALAT" not in ald_text


def test_ald_bizone_layout(ald_text):
    ald_heading = ald_text.index(ALD_HEADING)
    ald_line = ald_text.index("Numération formule sanguine [57022-6]")
    other_heading = ald_text.index(NON_ALD_HEADING)
    assert ald_heading < ald_line < other_heading
    assert other_heading < ald_text.index("Œstradiol (E2) [2243-4]")
    assert other_heading < ald_text.index(FREE_TEXT)


def test_no_ald_headings_without_ald_line():
    text = pdf_text(render_ordonnance_pdf(make_prescription(ald=False)))
    assert "affection de longue durée" not in text
    assert "Numération formule sanguine [57022-6]" in text
    assert "Examens prescrits" in text


def test_patient_name_only_when_given():
    with_name = pdf_text(
        render_ordonnance_pdf(
            make_prescription(), patient_name="Marie Dupont", patient_birth_date="1975-04-03"
        )
    )
    assert "Marie Dupont" in with_name
    assert "Née le 03/04/1975" in with_name
    without = pdf_text(render_ordonnance_pdf(make_prescription()))
    assert "Dupont" not in without
    assert "Née le 01/05/1980" in without
    assert "Sexe : féminin" in without


def test_patient_name_is_not_in_metadata():
    pdf = render_ordonnance_pdf(make_prescription(), patient_name="Marie Dupont")
    metadata = PdfReader(io.BytesIO(pdf)).metadata
    assert all("Dupont" not in str(value) for value in metadata.values())


def test_same_inputs_give_same_bytes():
    first = render_ordonnance_pdf(make_prescription(), patient_name="A B", issued_at=ISSUED)
    again = render_ordonnance_pdf(make_prescription(), patient_name="A B", issued_at=ISSUED)
    assert first == again
    assert render_ordonnance_pdf(make_prescription()) == render_ordonnance_pdf(make_prescription())


def test_creation_date_comes_from_issued_at():
    pdf = render_ordonnance_pdf(make_prescription(), issued_at=ISSUED)
    assert PdfReader(io.BytesIO(pdf)).metadata.creation_date == ISSUED


def test_long_prescription_flows_onto_more_pages():
    prescription = make_prescription()
    template = prescription["lines"][1]
    for number in range(30):
        line = copy.deepcopy(template)
        line.update(id=f"X{number}", label=f"Examen {number:02d}", comment="Commentaire " * 40)
        prescription["lines"].append(line)
    pdf = render_ordonnance_pdf(prescription)
    assert len(PdfReader(io.BytesIO(pdf)).pages) > 1
    text = pdf_text(pdf)
    assert all(f"Examen {number:02d} [2243-4]" in text for number in range(30))
    assert text.index(NON_ALD_HEADING) < text.index("Examen 29 [2243-4]")


def test_qr_code_decodes_from_rasterised_page():
    import pypdfium2

    pdf = render_ordonnance_pdf(make_prescription(), patient_name="Marie Dupont")
    page = pypdfium2.PdfDocument(pdf)[0]
    image = page.render(scale=200 / 72).to_pil()
    out = io.BytesIO()
    image.save(out, "PNG")
    assert decode_codes(out.getvalue()) == [CODE]


def test_a_long_unbroken_word_and_long_paragraphs_are_printed_whole_inside_the_page():
    prescription = make_prescription()
    word = "Z" * 700  # wider than a line: cut, never lost nor drawn past the margin
    prescription["lines"][1]["comment"] = word
    prescription["lines"][1]["sampling_instructions"] = "Tube sec. " * 300
    pdf = render_ordonnance_pdf(prescription)
    text = pdf_text(pdf)
    assert text.replace(" ", "").count("Z" * 700) == 1
    assert text.count("Tube sec.") == 300
    for ink in inverted_pages(pdf):
        assert not ink.crop((ink.width - 30, 0, ink.width, ink.height)).getbbox()


def inverted_pages(pdf: bytes) -> list:
    """Every page in grey levels, inverted, so that getbbox() finds the ink."""
    import pypdfium2
    from PIL import ImageOps

    document = pypdfium2.PdfDocument(pdf)
    return [ImageOps.invert(page.render(scale=1).to_pil().convert("L")) for page in document]


def test_the_fonts_cover_every_character_the_catalogue_and_the_value_sets_print():
    import json
    import re

    from fontTools.ttLib import TTFont

    from epu.catalogue import BUNDLED
    from qr import ordonnance, sampling_sheet
    from tests.conftest import shared_file

    printed = BUNDLED.read_text(encoding="utf-8")
    for name in ("JDV_Bio_instruction_patient_CISIS.xml", "JDV_HL7_SpecimenType_CISIS.xml"):
        printed += " ".join(
            re.findall(r'displayName="([^"]*)"', shared_file("data", "ans", name).read_text())
        )
    printed += json.dumps(
        [vars(module).get(name) for module in (ordonnance, sampling_sheet) for name in dir(module)
         if isinstance(vars(module).get(name), str | tuple)], ensure_ascii=False
    )  # fmt: skip
    for font in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        cmap = TTFont(ordonnance.FONTS / font).getBestCmap()
        missing = {ch for ch in set(printed) if ch.isprintable() and ord(ch) not in cmap}
        assert not missing, f"{font} lacks {sorted(missing)}"
