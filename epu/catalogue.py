"""The biology catalogue ("LOINC circuit de la biologie"): versions, lookup and search."""

import json
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import CatalogueEntry, CatalogueVersion
from models.db import writes

BUNDLED = Path(__file__).parent / "data" / "catalogue.json"


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Hémogramme' -> 'hemogramme', 'Œ' -> 'oe'."""
    text = text.casefold().replace("œ", "oe").replace("æ", "ae").replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _words(text: str) -> list[str]:
    return "".join(char if char.isalnum() else " " for char in fold(text)).split()


@dataclass(frozen=True)
class Entry:
    loinc: str
    label: str
    synonyms: tuple[str, ...]
    required_context: tuple[dict[str, str], ...]
    patient_instructions: tuple[str, ...]
    specimen: str | None = None  # the usual HL7 specimen type (JDV_HL7_SpecimenType_CISIS)
    _label_words: tuple[str, ...] = field(repr=False, default=())
    _synonym_folds: tuple[str, ...] = field(repr=False, default=())
    _synonym_words: tuple[str, ...] = field(repr=False, default=())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Entry":
        synonyms = tuple(data.get("synonyms") or ())
        return cls(
            loinc=data["loinc"],
            label=data["label"],
            synonyms=synonyms,
            required_context=tuple(data.get("required_context") or ()),
            patient_instructions=tuple(data.get("patient_instructions") or ()),
            specimen=data.get("specimen") or None,
            _label_words=tuple(_words(data["label"])),
            _synonym_folds=tuple(" ".join(_words(s)) for s in synonyms),
            _synonym_words=tuple(w for s in synonyms for w in _words(s)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "loinc": self.loinc,
            "label": self.label,
            "synonyms": list(self.synonyms),
            "required_context": [dict(item) for item in self.required_context],
            "patient_instructions": list(self.patient_instructions),
            **({"specimen": self.specimen} if self.specimen else {}),
        }

    def score(self, raw: str, query: str, query_words: list[str]) -> int:
        if raw == self.loinc:
            return 1000
        if raw[:1].isdigit() and self.loinc.startswith(raw):
            return 600
        if query in self._synonym_folds:
            return 900
        label = " ".join(self._label_words)
        if query == label:
            return 880
        total = 0
        for word in query_words:
            if word in self._label_words or word in self._synonym_words:
                total += 100
            elif any(w.startswith(word) for w in self._label_words + self._synonym_words):
                total += 60
            elif word in label:
                total += 20
            else:
                return 0
        if label.startswith(query_words[0]):
            total += 40
        return total


@dataclass(frozen=True)
class Catalogue:
    version_id: int | None
    entries: dict[str, Entry]

    def get(self, loinc: str) -> Entry | None:
        return self.entries.get(loinc)

    def search(self, query: str, limit: int) -> list[Entry]:
        """Best matches first; ties go to the shorter label, then the code."""
        words = _words(query)
        if not words:
            return sorted(self.entries.values(), key=lambda e: fold(e.label))[:limit]
        folded = " ".join(words)
        raw = query.strip()
        scored = [(entry.score(raw, folded, words), entry) for entry in self.entries.values()]
        ranked = sorted(
            (pair for pair in scored if pair[0] > 0),
            key=lambda pair: (-pair[0], len(pair[1].label), pair[1].loinc),
        )
        return [entry for _, entry in ranked[:limit]]


_cache: dict[str, Catalogue] = {}
_cache_lock = threading.Lock()
# A new version is an operator's import: other processes may see it a few seconds late, and
# the process that imports sees it at once.
VERSION_TTL_SECONDS = 5.0
_versions: dict[str, tuple[int | None, float]] = {}


def current_version_id(session: Session, *, fresh: bool = False) -> int | None:
    key = str(session.get_bind().url)
    cached = _versions.get(key)
    if (
        not fresh
        and cached
        and cached[0] is not None
        and time.monotonic() - cached[1] < VERSION_TTL_SECONDS
    ):
        return cached[0]
    version_id = session.scalar(select(func.max(CatalogueVersion.id)))
    _versions[key] = (version_id, time.monotonic())
    return version_id


def current(session: Session, *, fresh: bool = False) -> Catalogue:
    """The current catalogue version, read from the database once per version and process."""
    version_id = current_version_id(session, fresh=fresh)
    key = f"{session.get_bind().url}#{version_id}"
    cached = _cache.get(key)
    if cached is None:
        rows = (
            session.scalars(select(CatalogueEntry).where(CatalogueEntry.version_id == version_id))
            if version_id is not None
            else []
        )
        cached = Catalogue(
            version_id,
            {
                row.loinc: Entry.from_dict(
                    {
                        "loinc": row.loinc,
                        "label": row.label,
                        "synonyms": row.synonyms,
                        "required_context": row.required_context,
                        "patient_instructions": row.patient_instructions,
                        "specimen": row.specimen,
                    }
                )
                for row in rows
            },
        )
        with _cache_lock:
            _cache[key] = cached
    return cached


@writes
def import_entries(*, session: Session, entries: list[dict[str, Any]], source: str) -> int:
    """Store a new catalogue version; it becomes the current one. Returns its id."""
    version = CatalogueVersion(source=source[:300])
    session.add(version)
    session.flush()
    session.add_all(
        CatalogueEntry(
            version_id=version.id,
            loinc=entry["loinc"],
            label=entry["label"],
            synonyms=list(entry.get("synonyms") or []),
            required_context=list(entry.get("required_context") or []),
            patient_instructions=list(entry.get("patient_instructions") or []),
            specimen=entry.get("specimen") or None,
        )
        for entry in entries
    )
    session.commit()
    _versions.pop(str(session.get_bind().url), None)
    return version.id


@writes
def load_bundled_if_empty(*, session: Session) -> int | None:
    """Load the starter catalogue shipped with EPU when the database has none yet."""
    if current_version_id(session, fresh=True) is not None:
        session.rollback()
        return None
    entries = json.loads(BUNDLED.read_text(encoding="utf-8"))
    return import_entries(session=session, entries=entries, source="bundled starter catalogue")
