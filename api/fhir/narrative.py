"""A minimal generated narrative (text.status = generated): what a person sees of a resource
in a generic FHIR viewer. Contained resources carry none (FHIR dom-4)."""

from html import escape
from typing import Any

XHTML = "http://www.w3.org/1999/xhtml"


def generated(*rows: tuple[str, Any]) -> dict[str, str]:
    """A narrative of label: value rows; rows without a value are left out."""
    cells = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(str(value))}</td></tr>"
        for label, value in rows
        if value not in (None, "", [])
    )
    return {"status": "generated", "div": f'<div xmlns="{XHTML}"><table>{cells}</table></div>'}


def summary(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}"><p>{escape(text)}</p></div>'}
