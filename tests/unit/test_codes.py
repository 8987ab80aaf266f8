import random
import string

import pytest

from epu import codes

ALPHABET = codes.ALPHABET


def random_code(rng: random.Random) -> str:
    data = "".join(rng.choice(ALPHABET) for _ in range(codes.DATA_LENGTH))
    return data + codes.check_character(data)


def test_generated_codes_are_valid_and_distinct():
    generated = {codes.generate_code() for _ in range(2000)}
    assert len(generated) == 2000
    for code in generated:
        assert len(code) == 18 and set(code) <= set(ALPHABET)
        assert codes.normalise(code) == code


def test_alphabet_is_crockford_without_ambiguous_letters():
    assert len(ALPHABET) == 32
    assert not set("ILOU") & set(ALPHABET)


@pytest.mark.parametrize("seed", range(5))
def test_every_single_substitution_is_detected(seed):
    code = random_code(random.Random(seed))
    for position in range(codes.CODE_LENGTH):
        for symbol in ALPHABET:
            if symbol == code[position]:
                continue
            typo = code[:position] + symbol + code[position + 1 :]
            with pytest.raises(codes.InvalidCode):
                codes.normalise(typo)


def test_every_adjacent_transposition_is_detected_exhaustively():
    # Detection depends only on the two symbols and their position (the check is linear),
    # so every position with every ordered pair of distinct symbols covers all cases.
    rng = random.Random(42)
    for position in range(codes.CODE_LENGTH - 1):
        for a in ALPHABET:
            for b in ALPHABET:
                if a == b:
                    continue
                data = [rng.choice(ALPHABET) for _ in range(codes.DATA_LENGTH)]
                code = list("".join(data) + codes.check_character("".join(data)))
                code[position], code[position + 1] = a, b
                fixed = "".join(code[:-1])
                if position + 1 < codes.DATA_LENGTH:
                    code[-1] = codes.check_character(fixed[: codes.DATA_LENGTH])
                elif codes.check_character(fixed) != b:
                    continue  # position 16/17 pair: only codes whose check char is b exist
                original = "".join(code)
                swapped = original[:position] + b + a + original[position + 2 :]
                assert codes.normalise(original) == original
                with pytest.raises(codes.InvalidCode):
                    codes.normalise(swapped)


def test_transposition_with_the_check_character_is_detected():
    rng = random.Random(7)
    checked = 0
    while checked < 2000:
        code = random_code(rng)
        if code[-2] == code[-1]:
            continue
        swapped = code[:-2] + code[-1] + code[-2]
        with pytest.raises(codes.InvalidCode):
            codes.normalise(swapped)
        checked += 1


def test_people_and_scanners_are_forgiven_case_spaces_hyphens_and_look_alikes():
    code = "01S2TBPZ2JCNZZYGH" + codes.check_character("01S2TBPZ2JCNZZYGH")
    human = codes.for_humans(code)
    assert human == f"01S2 TBPZ 2JCN ZZYG H{code[-1]}"
    assert codes.normalise(human) == code
    assert codes.normalise(human.lower().replace(" ", "-")) == code
    assert codes.normalise(code.replace("0", "O").replace("1", "I")) == code
    assert codes.normalise(code.replace("1", "l")) == code


@pytest.mark.parametrize("raw", ["", "ABC", "U" * 18, "01S2TBPZ2JCNZZYGH*", "0" * 19])
def test_malformed_codes_are_refused(raw):
    with pytest.raises(codes.InvalidCode):
        codes.normalise(raw)


def test_codes_carry_at_least_80_random_bits():
    assert codes.DATA_LENGTH * 5 >= 80
    assert set(string.digits) <= set(ALPHABET)
