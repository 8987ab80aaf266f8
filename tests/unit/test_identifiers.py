import pytest

from epu.identifiers import (
    ins_pseudonym,
    is_finess,
    is_ins,
    is_loinc,
    is_rpps,
    loinc_check_digit,
)
from tests.factories import OTHER_INS, VALID_INS, ins_with_key


def test_rpps_and_finess_need_their_length_and_luhn_key():
    assert is_rpps("10005688790")
    assert not is_rpps("10005688791")
    assert not is_rpps("1000568879")
    assert is_finess("130000029")
    assert not is_finess("130000028")
    assert not is_finess("13000002A")


def test_ins_key_is_97_minus_nir_mod_97():
    assert is_ins("184037645108996")
    assert not is_ins("184037645108997")
    assert is_ins("1 84 03 76 451 089 96")


@pytest.mark.parametrize("department", ["2A", "2B"])
def test_ins_of_corsica(department):
    ins = ins_with_key(f"26905{department}123456")
    assert is_ins(ins)
    assert is_ins(ins.lower())
    wrong = ins[:-2] + f"{(int(ins[-2:]) + 1) % 97:02d}"
    assert not is_ins(wrong)


def test_corsica_keys_use_19_and_18():
    assert VALID_INS == "269052A12345688"
    assert 97 - 2690519123456 % 97 == 88
    assert is_ins("269052B12345600") is (97 - 2690518123456 % 97 == 0)


@pytest.mark.parametrize(
    "bad", ["", "12345", "3690575123456xx", "969057512345612", "2690575A2345612"]
)
def test_malformed_ins_refused(bad):
    assert not is_ins(bad)


def test_pseudonym_is_keyed_stable_and_never_the_ins():
    key = b"k" * 32
    first = ins_pseudonym(VALID_INS, key=key)
    assert first == ins_pseudonym(VALID_INS.lower(), key=key)
    assert first != ins_pseudonym(OTHER_INS, key=key)
    assert first != ins_pseudonym(VALID_INS, key=b"x" * 32)
    assert VALID_INS not in first


@pytest.mark.parametrize("code", ["57022-6", "2842-3", "2345-7", "8665-2", "2160-0", "718-7"])
def test_loinc_check_digits(code):
    assert is_loinc(code)


def test_loinc_bad_digit_or_format():
    assert loinc_check_digit("2345") == 7
    assert not is_loinc("2345-8")
    assert not is_loinc("2345")
    assert not is_loinc("12345678-9")
