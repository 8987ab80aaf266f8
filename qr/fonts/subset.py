"""Cut the shipped DejaVu fonts down to the scripts a French ordonnance prints.

Every PDF parses and subsets its two fonts: with the 6,253 glyphs, layout tables and
hinting of the full DejaVu Sans, that was two thirds of the time of a one-line ordonnance.
Run from the project root, with the full fonts as the source (Debian's fonts-dejavu-core,
or the originals in git, commit 5f05824, qr/fonts/):

    .venv/bin/python -m qr.fonts.subset /usr/share/fonts/truetype/dejavu

tests/unit/test_ordonnance_pdf.py checks that every character of the bundled catalogue and of
the ordonnance's own texts is covered. The licence allows modified fonts that are not named
Bitstream or Vera.
"""

import sys
from pathlib import Path

from fontTools import subset

FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
RANGES = (
    (0x0020, 0x007E),  # Basic Latin
    (0x00A0, 0x024F),  # Latin-1, Latin Extended-A and B
    (0x02B0, 0x036F),  # spacing modifiers, combining diacritics
    (0x0370, 0x03FF),  # Greek (β-hCG, µ, α-fœtoprotéine)
    (0x1E00, 0x1EFF),  # Latin Extended Additional
    (0x2000, 0x20CF),  # punctuation, super- and subscripts, currency
    (0x2100, 0x23FF),  # letterlike, number forms, arrows, mathematical operators, technical
    (0x2460, 0x24FF),  # enclosed alphanumerics
    (0x25A0, 0x27BF),  # geometric shapes, miscellaneous symbols (☐), dingbats (✓)
    (0xFB00, 0xFB06),  # ligatures
    (0xFFFD, 0xFFFD),  # replacement character
)


def unicodes() -> list[int]:
    return [code for first, last in RANGES for code in range(first, last + 1)]


def main(source: Path, target: Path) -> None:
    # fpdf2 shapes no text: the layout tables and the hinting are dead weight on paper.
    options = subset.Options(layout_features=[], name_IDs=["*"], name_languages=["*"])
    options.notdef_outline = True
    options.glyph_names = True
    options.hinting = False
    options.drop_tables += ["FFTM", "GSUB", "GPOS", "GDEF", "kern"]
    for name in FONTS:
        font = subset.load_font(str(source / name), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=unicodes())
        subsetter.subset(font)
        subset.save_font(font, str(target / name), options)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent)
