"""Property tests: the pure functions never raise unexpectedly and keep their promises."""

import json

from hypothesis import given
from hypothesis import strategies as st

from epu import codes
from epu.catalogue import BUNDLED, Catalogue, Entry
from epu.identifiers import is_ins, is_loinc

data_parts = st.text(
    alphabet=codes.ALPHABET, min_size=codes.DATA_LENGTH, max_size=codes.DATA_LENGTH
)
CATALOGUE = Catalogue(
    1,
    {
        entry["loinc"]: Entry.from_dict(entry)
        for entry in json.loads(BUNDLED.read_text(encoding="utf-8"))
    },
)


@given(st.text(max_size=40))
def test_normalise_returns_a_valid_code_or_raises_invalid_code(raw):
    try:
        code = codes.normalise(raw)
    except codes.InvalidCode:
        return
    assert codes.is_valid(code) and len(code) == codes.CODE_LENGTH


@given(data_parts)
def test_a_code_survives_every_way_people_write_it(data):
    code = data + codes.check_character(data)
    human = codes.for_humans(code)
    assert codes.normalise(human) == code
    assert codes.normalise(human.lower().replace(" ", "-")) == code
    assert codes.normalise(code.replace("1", "I").replace("0", "o")) == code


@given(data_parts, st.integers(0, codes.CODE_LENGTH - 1), st.sampled_from(codes.ALPHABET))
def test_any_single_substitution_is_caught(data, position, symbol):
    code = data + codes.check_character(data)
    typo = code[:position] + symbol + code[position + 1 :]
    assert codes.is_valid(typo) == (typo == code)


@given(st.text(max_size=20))
def test_identifier_checks_never_raise(value):
    assert isinstance(is_ins(value), bool)
    assert isinstance(is_loinc(value), bool)


@given(
    st.integers(0, 2),
    st.integers(0, 99),
    st.integers(1, 12),
    st.integers(1, 95),
    st.integers(1, 999),
    st.integers(1, 999),
)
def test_ins_with_its_computed_key_is_valid_and_any_other_key_is_not(
    sex, year, month, department, commune, order
):
    body = f"{sex + 1}{year:02d}{month:02d}{department:02d}{commune:03d}{order:03d}"
    key = 97 - int(body) % 97
    assert is_ins(f"{body}{key:02d}")
    assert not is_ins(f"{body}{(key % 97) + 1:02d}")


@given(st.text(max_size=60), st.integers(1, 100))
def test_catalogue_search_never_raises_and_returns_entries(query, limit):
    results = CATALOGUE.search(query, limit)
    assert len(results) <= limit
    assert all(isinstance(entry, Entry) and entry.loinc in CATALOGUE.entries for entry in results)
    assert len({entry.loinc for entry in results}) == len(results)


@given(
    st.text(alphabet=st.sampled_from("ab cdéfghij\nWMŒβ"), max_size=300),
    st.floats(min_value=0.5, max_value=40),
)
def test_wrap_keeps_every_character_and_every_line_fits(text, width):
    from qr.text_layout import CharWidths, wrap

    widths = CharWidths(lambda ch: 2.0 if ch in "WMŒ" else 1.0)
    lines = wrap(text, width, widths)
    assert "".join("".join(lines).split()) == "".join(text.split())
    assert len(lines) >= text.count("\n") + 1
    for line in lines:
        assert widths.of(line) <= width or len(line) == 1
