"""Greedy line breaking in linear time.

fpdf2's own line breaking (multi_cell, write) measures the whole fragment again for every
character it adds, so a paragraph of n characters costs O(n²): a long prescription took
seconds to print. Here each character is measured once per font, then summed.
"""

from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate


class CharWidths(dict):
    """Width of each character in one font, measured the first time it is asked."""

    def __init__(self, measure: Callable[[str], float]) -> None:
        super().__init__()
        self._measure = measure

    def __missing__(self, ch: str) -> float:
        width = self[ch] = self._measure(ch)
        return width

    def of(self, text: str) -> float:
        return sum(map(self.__getitem__, text))


def wrap(text: str, width: float, widths: CharWidths) -> list[str]:
    """Break `text` into lines no wider than `width`: at spaces when a word fits, inside a
    word only when the word alone is wider than a line; newlines are kept. An empty text is
    one empty line, so that it still takes its height."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap_paragraph(paragraph, width, widths))
    return lines


def _wrap_paragraph(paragraph: str, width: float, widths: CharWidths) -> list[str]:
    lines: list[str] = []
    current: list[str] = []
    used = 0.0
    space = widths[" "]
    for word in paragraph.split():
        word_width = widths.of(word)
        if current and used + space + word_width <= width:
            current.append(word)
            used += space + word_width
            continue
        if current:
            lines.append(" ".join(current))
        if word_width <= width:
            current, used = [word], word_width
            continue
        *pieces, last = _split_word(word, width, widths)
        lines.extend(pieces)
        current, used = [last], widths.of(last)
    lines.append(" ".join(current))
    return lines


def _split_word(word: str, width: float, widths: CharWidths) -> list[str]:
    """Cut a word wider than a line into pieces that fit (at least one character each)."""
    ends = list(accumulate(map(widths.__getitem__, word)))
    pieces, start, offset = [], 0, 0.0
    while start < len(word):
        stop = max(start + 1, bisect_right(ends, offset + width, lo=start))
        pieces.append(word[start:stop])
        offset, start = ends[stop - 1], stop
    return pieces
