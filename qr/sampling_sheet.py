"""The sampling sheet page of the ordonnance, for the nurse who samples at home."""

from __future__ import annotations

from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from qr.ordonnance import (
    FONT,
    MARGIN,
    MUTED_RGB,
    URGENT_RGB,
    _item_label,
    _line_title,
    _qr_block_bottom,
    _write_qr_block,
)

SHEET_TITLE = "Fiche de prélèvement"
SHEET_HINT = (
    "À remplir par l'infirmier·ère qui prélève ; à joindre aux échantillons. "
    "Le laboratoire retrouve la prescription par son code."
)
BOXES = ("Date du prélèvement", "Heure", "Signature de l'infirmier·ère")


def write_sampling_sheet(pdf: FPDF, code: str, groups: list[dict[str, Any]]) -> None:
    """A new page: the title, the QR and the code, the lines by specimen type, the boxes."""
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, SHEET_TITLE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    top = pdf.get_y() + 2
    _write_qr_block(pdf, code, top)
    pdf.set_xy(MARGIN, top)
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(*MUTED_RGB)
    pdf.paragraph(95, 4.5, SHEET_HINT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_y(max(pdf.get_y(), _qr_block_bottom(top)) + 4)
    for group in groups:
        _write_group(pdf, group)
    _write_boxes(pdf)


def _write_group(pdf: FPDF, group: dict[str, Any]) -> None:
    heading = group["label"] + (f" ({group['type']})" if group["type"] else "")
    pdf.set_font(FONT, "B", 11)
    pdf.paragraph(0, 6, heading)
    for line in group["lines"]:
        pdf.set_x(MARGIN + 4)
        pdf.set_font(FONT, "", 10)
        pdf.paragraph(pdf.epw - 4, 5, "☐ " + _line_title(line))
        details = []
        if line.get("urgent"):
            details.append(("URGENT", URGENT_RGB))
        if line.get("sampling_instructions"):
            details.append((f"Consignes de prélèvement : {line['sampling_instructions']}", None))
        instructions = [_item_label(item) for item in line.get("patient_instructions") or []]
        if instructions:
            details.append(("Consignes au patient : " + " ; ".join(instructions), None))
        for text, rgb in details:
            pdf.set_x(MARGIN + 10)
            pdf.set_font(FONT, "B" if rgb else "", 9)
            pdf.set_text_color(*(rgb or (0, 0, 0)))
            pdf.paragraph(pdf.epw - 10, 4.5, text)
            pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _write_boxes(pdf: FPDF) -> None:
    """Three boxes side by side: date, time, signature."""
    height = 22.0
    if pdf.get_y() + height + 8 > pdf.page_break_trigger:
        pdf.add_page()
    pdf.ln(4)
    widths = (45.0, 30.0, pdf.epw - 45.0 - 30.0 - 8.0)
    x, y = MARGIN, pdf.get_y()
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.3)
    for label, width in zip(BOXES, widths, strict=True):
        pdf.rect(x, y, width, height)
        pdf.set_xy(x + 1.5, y + 1.5)
        pdf.set_font(FONT, "", 8)
        pdf.set_text_color(*MUTED_RGB)
        pdf.cell(width - 3, 4, label)
        pdf.set_text_color(0, 0, 0)
        x += width + 4
    pdf.set_y(y + height + 2)
