"""French health identifiers: RPPS and FINESS (Luhn), INS/NIR (mod 97 key), LOINC check digit."""

import hashlib
import hmac
import re

_INS = re.compile(r"^[12378]\d{4}(\d{2}|2A|2B)\d{6}\d{2}$", re.ASCII)
_LOINC = re.compile(r"^(\d{1,7})-(\d)$", re.ASCII)
_PHONE_SEPARATORS = re.compile(r"[ .\-()]")
_PHONE = re.compile(r"^(\+[1-9]\d{7,14}|0\d{9})$", re.ASCII)
_CORSICA = {"2A": "19", "2B": "18"}  # the NIR key treats 2A as 19 and 2B as 18


def luhn_valid(digits: str) -> bool:
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def is_phone(value: str) -> bool:
    """A French number (0 and 9 digits) or an international one (+ and 8 to 15 digits)."""
    return len(value) <= 30 and bool(_PHONE.match(_PHONE_SEPARATORS.sub("", value)))


def is_rpps(value: str) -> bool:
    return len(value) == 11 and luhn_valid(value)


def is_finess(value: str) -> bool:
    return len(value) == 9 and luhn_valid(value)


def normalise_ins(value: str) -> str:
    return value.replace(" ", "").upper()


def is_ins(value: str) -> bool:
    """A 15-character NIR/NIA with a valid key (97 - NIR mod 97); Corsica 2A/2B handled."""
    ins = normalise_ins(value)
    if not _INS.match(ins):
        return False
    department = _CORSICA.get(ins[5:7], ins[5:7])
    body = ins[:5] + department + ins[7:13]
    return 97 - int(body) % 97 == int(ins[13:])


def ins_pseudonym(ins: str, *, key: bytes) -> str:
    """Keyed pseudonym of an INS: the base never stores the INS itself."""
    return hmac.new(key, normalise_ins(ins).encode(), hashlib.sha256).hexdigest()


def loinc_check_digit(number: str) -> int:
    """LOINC's mod 10 check digit of the part before the hyphen."""
    total = 0
    for position, char in enumerate(reversed(number)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def is_loinc(code: str) -> bool:
    match = _LOINC.match(code)
    return bool(match) and loinc_check_digit(match[1]) == int(match[2])
