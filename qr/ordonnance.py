"""Printable PDF ordonnance of a biology prescription, with its QR code."""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import TTFFont

from epu.codes import for_humans as group_code
from qr.render import render_png
from qr.text_layout import CharWidths, wrap

FONTS = Path(__file__).parent / "fonts"

TITLE = "Ordonnance d'examens de biologie médicale"
ALD_HEADING = (
    "Prescriptions relatives au traitement de l'affection de longue durée reconnue"
    " (liste ou hors liste)"
)
NON_ALD_HEADING = "Prescriptions SANS RAPPORT avec l'affection de longue durée"
# What the eP-BIO content model asks each act to say about its cover, as the ALD zone does.
COVER_MENTIONS = (
    ("work_accident", "En rapport avec un accident du travail ou une maladie professionnelle"),
    ("not_reimbursable", "Non remboursable"),
    ("off_nomenclature", "Hors nomenclature (hors NABM)"),
)
SINGLE_HEADING = "Examens prescrits"
PRESENT_HINT = "Présentez cette ordonnance au laboratoire ou montrez-la depuis votre espace santé."
RGPD_NOTICE = (
    "Les données de cette prescription sont traitées par le service EPU (e-prescription"
    " unifiée) dans le seul but de permettre la réalisation des examens prescrits, dans"
    " le respect du RGPD. Aucune donnée d'identité du patient n'est conservée par le"
    " service : le nom éventuellement imprimé sur ce document n'est ni enregistré ni"
    " transmis. Vous pouvez exercer vos droits d'accès, de rectification et"
    " d'opposition auprès du service EPU et introduire une réclamation auprès de la CNIL."
)
HIDDEN_LINE_STATUSES = frozenset({"removed", "replaced"})
STATUS_BANNERS = {"cancelled": "ORDONNANCE ANNULÉE", "expired": "ORDONNANCE EXPIRÉE"}

FONT = "Lato"
CODE_FONT = "Courier"  # core font: the code is ASCII only, and monospace eases typing
MARGIN = 15.0
FOOTER_HEIGHT = 27.0
QR_SIZE_MM = 38.0
QR_SCALE = 16  # 33 modules x 16 px: integral pixels per module, ~350 dpi at 38 mm
QR_COLUMN_WIDTH = 70.0
DETAIL_INDENT = 6.0
URGENT_RGB = (180, 0, 0)
MUTED_RGB = (90, 90, 90)
_SEXES = {"female": "féminin", "male": "masculin", "other": "autre", "unknown": "non renseigné"}
_BORN = {"female": "Née le", "male": "Né le"}
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


# Per process: every document loads the same font files (TrueType: advances by code point).
_CHAR_WIDTHS: dict[tuple[str, str, float], CharWidths] = {}


@dataclass(frozen=True)
class _Row:
    """One paragraph of a prescription line, with its typography."""

    text: str
    style: str = ""
    size: float = 9.5
    indent: float = DETAIL_INDENT
    rgb: tuple[int, int, int] = (0, 0, 0)


class _OnceEncodedFont(TTFFont):
    """fpdf2's TrueType font, encoding a text with one str.translate: fpdf2 asks the subset
    for each character of each line, in Python, which was a quarter of a long ordonnance."""

    __slots__ = ()

    def encode_text(self, text: str) -> str:
        if self.is_symbol:
            return super().encode_text(text)
        table: dict[int, str | None] = vars(self.subset).setdefault("epu_translation", {})
        for ch in dict.fromkeys(text):  # first-seen order, as fpdf2 picks: the same bytes
            point = ord(ch)
            if point not in table:
                picked = self.subset.pick(point)
                table[point] = None if picked is None else chr(picked)
        return f"({self.escape_text(text.translate(table))}) Tj"


class _OrdonnancePDF(FPDF):
    """FPDF page template: a reminder header after page 1 and the RGPD footer."""

    def __init__(self, grouped_code: str, issued_label: str | None) -> None:
        """Set up an A4 portrait document with the Unicode fonts loaded."""
        super().__init__(orientation="P", unit="mm", format="A4")
        self.grouped_code = grouped_code
        self.issued_label = issued_label
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=FOOTER_HEIGHT + 3)
        self._wrapped: dict[tuple, list[str]] = {}
        for style, file_name in (
            ("", "DejaVuSans.ttf"),
            ("B", "DejaVuSans-Bold.ttf"),
        ):
            self.add_font(FONT, style, _font_path(file_name))
        for font in self.fonts.values():
            font.__class__ = _OnceEncodedFont

    def wrapped(self, width: float, text: str) -> list[str]:
        """The lines of `text` in the current font, in a cell `width` wide (0: to the right
        margin), each character measured once per font."""
        width = width or self.w - self.r_margin - self.get_x()
        key = (self.font_family, self.font_style, self.font_size_pt)
        known = self._wrapped.get((key, width, text))  # rows are measured, then drawn
        if known is not None:
            return known
        widths = _CHAR_WIDTHS.get(key)
        if widths is None:
            advances, scale = self.current_font.cw, self.font_size_pt / 1000 / self.k
            widths = _CHAR_WIDTHS[key] = CharWidths(lambda ch: advances[ord(ch)] * scale)
        lines = wrap(unicodedata.normalize("NFC", text), width - 2 * self.c_margin, widths)
        self._wrapped[(key, width, text)] = lines
        return lines

    def paragraph(self, width: float, leading: float, text: str, align: Align = Align.L) -> None:
        """Write `text` wrapped in a column from the current x, then go to the left margin of
        the next line (what multi_cell does, without its quadratic line breaking)."""
        x = self.get_x()
        width = width or self.w - self.r_margin - x
        lines = self.wrapped(width, text)
        if align != Align.L:
            for line in lines:
                self.set_x(x)
                self.cell(width, leading, line, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            return
        for line in lines:  # text() is three times cheaper than cell(): break pages as it does
            if self.will_page_break(leading):
                self.add_page(same=True)
            if line:
                self.text(x + self.c_margin, self.y + 0.5 * leading + 0.3 * self.font_size, line)
            self.y += leading
        self.x = self.l_margin

    def header(self) -> None:
        """Repeat the title and code on continuation pages."""
        if self.page_no() == 1:
            return
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED_RGB)
        self.cell(
            0, 5, f"{TITLE} : {self.grouped_code} (suite)", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.set_text_color(0, 0, 0)
        self.ln(3)

    def footer(self) -> None:
        """Print the RGPD notice and the page number."""
        self.set_y(-FOOTER_HEIGHT)
        self.set_draw_color(*MUTED_RGB)
        self.set_line_width(0.2)
        self.line(MARGIN, self.get_y(), self.w - MARGIN, self.get_y())
        self.ln(1.5)
        self.set_font(FONT, "", 7)
        self.set_text_color(*MUTED_RGB)
        self.paragraph(0, 3.2, RGPD_NOTICE)
        parts = [f"Ordonnance {self.grouped_code}", f"page {self.page_no()}/{{nb}}"]
        if self.issued_label:
            parts.insert(1, self.issued_label)
        self.cell(0, 4, " · ".join(parts), align=Align.R)
        self.set_text_color(0, 0, 0)


def render_ordonnance_pdf(
    prescription: dict[str, Any],
    *,
    patient_name: str | None = None,
    patient_birth_date: str | None = None,
    issued_at: datetime | None = None,
    sampling_sheet: list[dict[str, Any]] | None = None,
) -> bytes:
    """Render the prescription as an A4 PDF ordonnance (same inputs give the same bytes);
    `sampling_sheet` (specimen groups, epu.sampling_sheet) adds the nurse's page."""
    code = str(prescription["code"]).upper()
    issued_label = f"édité le {_fr_datetime(issued_at)}" if issued_at else None
    pdf = _OrdonnancePDF(group_code(code), issued_label)
    _set_metadata(pdf, issued_at or _parse_datetime(prescription.get("created_at")))
    pdf.add_page()
    _write_title(pdf, prescription.get("status"))
    top = pdf.get_y()
    _write_qr_block(pdf, code, top)
    pdf.set_xy(MARGIN, top)
    _write_identity_block(pdf, prescription, patient_name, patient_birth_date)
    pdf.set_y(max(pdf.get_y(), _qr_block_bottom(top)) + 4)
    _write_clinical_context(pdf, prescription.get("clinical_context"))
    _write_lines(pdf, _visible_lines(prescription.get("lines") or []))
    if sampling_sheet is not None:
        from qr.sampling_sheet import write_sampling_sheet  # it draws with this module's parts

        write_sampling_sheet(pdf, code, sampling_sheet)
    return bytes(pdf.output())


def _font_path(file_name: str) -> str:
    """A DejaVu TTF shipped with EPU (free licence, covers œ, β and the French accents)."""
    return str(FONTS / file_name)


def _set_metadata(pdf: FPDF, created: datetime | None) -> None:
    """Set document metadata; a fixed creation date makes the output reproducible."""
    pdf.set_title(TITLE)
    pdf.set_creator("EPU")
    pdf.set_lang("fr-FR")
    pdf.set_creation_date(_aware(created or datetime(2000, 1, 1)))


def _write_title(pdf: FPDF, status: str | None) -> None:
    """Write the document title and, for a dead prescription, a warning banner."""
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, TITLE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    banner = STATUS_BANNERS.get(status or "")
    if banner:
        pdf.set_font(FONT, "B", 12)
        pdf.set_text_color(*URGENT_RGB)
        pdf.cell(0, 7, banner, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    pdf.ln(3)


def _qr_column_x(pdf: FPDF) -> float:
    """Return the left edge of the right-hand QR column."""
    return pdf.w - MARGIN - QR_COLUMN_WIDTH


def _qr_block_bottom(top: float) -> float:
    """Return the y below the QR, the typed code and the hint (3 lines at most)."""
    return top + QR_SIZE_MM + 8 + 3 * 3.6


def _write_qr_block(pdf: FPDF, code: str, top: float) -> None:
    """Draw the QR code, the code in groups of four and the hint to present it."""
    x = _qr_column_x(pdf)
    png = io.BytesIO(render_png(code, QR_SCALE))
    pdf.image(png, x=x + (QR_COLUMN_WIDTH - QR_SIZE_MM) / 2, y=top, w=QR_SIZE_MM, h=QR_SIZE_MM)
    pdf.set_xy(x, top + QR_SIZE_MM)
    pdf.set_font(CODE_FONT, "B", 14)
    pdf.cell(QR_COLUMN_WIDTH, 7, group_code(code), align=Align.C, new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_x(x)
    pdf.set_font(FONT, "", 8)
    pdf.paragraph(QR_COLUMN_WIDTH, 3.6, PRESENT_HINT, align=Align.C)


def _write_identity_block(
    pdf: FPDF, prescription: dict[str, Any], patient_name: str | None, birth_date: str | None
) -> None:
    """Write the prescriber and patient blocks in the left column."""
    width = _qr_column_x(pdf) - MARGIN - 5
    prescriber = prescription.get("prescriber") or {}
    _write_label(pdf, "Prescripteur", width)
    pdf.set_font(FONT, "B", 12)
    pdf.paragraph(width, 6, prescriber.get("name") or "")
    pdf.set_font(FONT, "", 10)
    pdf.paragraph(width, 5, f"RPPS {prescriber.get('rpps', '')}")
    pdf.paragraph(width, 5, f"Date de prescription : {_fr_date(prescription.get('created_at'))}")
    pdf.ln(4)
    _write_patient(pdf, prescription.get("patient") or {}, patient_name, birth_date, width)


def _write_label(pdf: FPDF, text: str, width: float) -> None:
    """Write a small grey block label."""
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*MUTED_RGB)
    pdf.paragraph(width, 4, text.upper())
    pdf.set_text_color(0, 0, 0)


def _write_patient(
    pdf: FPDF, patient: dict[str, Any], name: str | None, birth_date: str | None, width: float
) -> None:
    """Write the patient block; name and birth date given here are printed only."""
    _write_label(pdf, "Patient", width)
    pdf.set_font(FONT, "B" if name else "", 11 if name else 10)
    pdf.paragraph(width, 6, name or "Nom et prénom : ....................................")
    sex = patient.get("sex")
    born = _BORN.get(sex or "", "Né(e) le")
    pdf.set_font(FONT, "", 10)
    pdf.paragraph(width, 5, f"{born} {_fr_date(birth_date or patient.get('birth_date'))}")
    pdf.paragraph(width, 5, f"Sexe : {_SEXES.get(sex or 'unknown', sex)}")


def _write_clinical_context(pdf: FPDF, context: str | None) -> None:
    """Write the general clinical context of the prescription, if any."""
    if not context:
        return
    _write_rows(pdf, [_Row(f"Contexte clinique : {context}", "", 10, 0)])
    pdf.ln(3)


def _visible_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the lines that were removed or replaced."""
    return [line for line in lines if line.get("status") not in HIDDEN_LINE_STATUSES]


def _write_lines(pdf: FPDF, lines: list[dict[str, Any]]) -> None:
    """Write the lines, in the ALD bizone layout when any line is ALD."""
    if not any(line.get("ald") for line in lines):
        _write_zone(pdf, SINGLE_HEADING, lines, 1)
        return
    ald = [line for line in lines if line.get("ald")]
    other = [line for line in lines if not line.get("ald")]
    _write_zone(pdf, ALD_HEADING, ald, 1)
    _write_zone_rule(pdf)
    _write_zone(pdf, NON_ALD_HEADING, other, len(ald) + 1)


def _write_zone_rule(pdf: FPDF) -> None:
    """Draw the thick horizontal rule that separates the two zones."""
    pdf.ln(2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.6)
    pdf.line(MARGIN, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
    pdf.ln(4)


def _write_zone(pdf: FPDF, heading: str, lines: list[dict[str, Any]], first_number: int) -> None:
    """Write a zone heading and its numbered lines."""
    rows = [_Row(heading, "B", 11, 0)]
    _keep_together(pdf, rows + (_line_rows(lines[0], first_number) if lines else []))
    _write_rows(pdf, rows)
    pdf.ln(1.5)
    if not lines:
        _write_rows(pdf, [_Row("Aucun examen.", "", 9.5, 0, MUTED_RGB)])
    for number, line in enumerate(lines, start=first_number):
        line_rows = _line_rows(line, number)
        _keep_together(pdf, line_rows)
        _write_rows(pdf, line_rows)
        pdf.ln(2)


def _line_rows(line: dict[str, Any], number: int) -> list[_Row]:
    """Turn a prescription line into paragraphs: title, flags and details."""
    rows = [_Row(f"{number}. {_line_title(line)}", "B", 10.5, 0)]
    if line.get("urgent"):
        reason = line.get("urgent_reason")
        rows.append(_Row(f"URGENT : {reason}" if reason else "URGENT", "B", 10, rgb=URGENT_RGB))
    rows.extend(_Row(mention, "B", 9.5) for label, mention in COVER_MENTIONS if line.get(label))
    if line.get("label") and line.get("text"):
        rows.append(_Row(line["text"]))
    rows.extend(_Row(text) for text in _detail_texts(line))
    return rows


def _line_title(line: dict[str, Any]) -> str:
    """Return the label with its LOINC code in brackets, or the free text."""
    label = line.get("label") or line.get("text") or "Examen"
    loinc = line.get("loinc")
    return f"{label} [{loinc}]" if loinc else label


def _detail_texts(line: dict[str, Any]) -> list[str]:
    """Return the detail paragraphs of a line, in reading order."""
    texts = [
        f"{item.get('label') or item.get('code')} : {_fr_value(item.get('value'))}"
        for item in line.get("context") or []
    ]
    instructions = [_item_label(item) for item in line.get("patient_instructions") or []]
    if instructions:
        texts.append("Consignes au patient : " + " ; ".join(instructions))
    for label, key in (
        ("Consignes de prélèvement", "sampling_instructions"),
        ("Commentaire", "comment"),
    ):
        if line.get(key):
            texts.append(f"{label} : {line[key]}")
    texts.extend(_flag_texts(line))
    return texts


def _flag_texts(line: dict[str, Any]) -> list[str]:
    """Return the renewal, prevention and completion mentions of a line."""
    texts = []
    renewals = line.get("renewals") or 0
    if renewals > 0:
        left = line.get("renewals_left")
        texts.append(
            f"À renouveler {renewals} fois"
            + (f" (reste {left})" if left is not None and left < renewals else "")
        )
    if line.get("prevention"):
        texts.append("Acte de prévention")
    if line.get("status") == "done":
        texts.append("Examen réalisé")
    return texts


def _item_label(item: Any) -> str:
    """Return the label of a coded item, or the item itself when it is plain text."""
    if isinstance(item, dict):
        return str(item.get("label") or item.get("code") or "")
    return str(item)


def _keep_together(pdf: FPDF, rows: list[_Row]) -> None:
    """Start a new page when the rows do not fit in what is left of this one."""
    height = sum(_row_height(pdf, row) for row in rows)
    room = pdf.page_break_trigger - pdf.get_y()
    full_page = pdf.page_break_trigger - pdf.t_margin - 8
    if room < height <= full_page:
        pdf.add_page()


def _row_height(pdf: FPDF, row: _Row) -> float:
    """Measure a row without drawing it."""
    pdf.set_font(FONT, row.style, row.size)
    return len(pdf.wrapped(pdf.epw - row.indent, row.text)) * _leading(row)


def _write_rows(pdf: FPDF, rows: list[_Row]) -> None:
    """Draw rows as wrapped paragraphs."""
    for row in rows:
        pdf.set_font(FONT, row.style, row.size)
        pdf.set_text_color(*row.rgb)
        pdf.set_x(MARGIN + row.indent)
        pdf.paragraph(pdf.epw - row.indent, _leading(row), row.text)
    pdf.set_text_color(0, 0, 0)


def _leading(row: _Row) -> float:
    """Line height in mm for a font size in points."""
    return row.size * 0.5


def _parse_datetime(value: str | None) -> datetime | None:
    """Parse an ISO 8601 timestamp (with Z), or return None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    """Attach UTC to a naive datetime."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _paris(moment: datetime) -> datetime:
    """Convert to French metropolitan time, when the time zone database is there."""
    try:
        return _aware(moment).astimezone(ZoneInfo("Europe/Paris"))
    except ZoneInfoNotFoundError:
        return _aware(moment)


def _fr_date(value: str | date | None) -> str:
    """Format an ISO date or timestamp as dd/mm/yyyy; other text is kept as is."""
    if isinstance(value, datetime):
        return _paris(value).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if not value:
        return ""
    if _ISO_DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value).strftime("%d/%m/%Y")
        except ValueError:
            return value
    moment = _parse_datetime(value)
    return _paris(moment).strftime("%d/%m/%Y") if moment else value


def _fr_datetime(moment: datetime) -> str:
    """Format a timestamp as 'dd/mm/yyyy à HHhMM' in French time."""
    return _paris(moment).strftime("%d/%m/%Y à %Hh%M")


def _fr_value(value: Any) -> str:
    """Format a clinical context value, turning ISO dates into dd/mm/yyyy."""
    if isinstance(value, str) and _ISO_DATE_RE.fullmatch(value):
        return _fr_date(value)
    return "" if value is None else str(value)
