"""Prescription codes: 18 Crockford base32 characters, the last one a check character.

The check character makes the weighted sum of all 18 symbols, seen as elements of
GF(32), equal to zero. Position i (0-based, data positions) has weight alpha**(i+1) and the
check character weight 1, where alpha generates GF(32)*. All 18 weights are distinct
and non-zero, so a single substitution (d * w != 0) and a transposition of two adjacent
symbols ((a - b) * (w_i - w_j) != 0) always change the sum: both are always detected.
"""

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 18
DATA_LENGTH = CODE_LENGTH - 1
OID = "urn:oid:1.2.250.1.215.500.1.1"

_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_LOOK_ALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = str.maketrans("", "", " -\t\n\r")
_POLYNOMIAL = 0b100101  # x^5 + x^2 + 1, primitive: x generates GF(32)*


class InvalidCode(ValueError):
    """A code that is not 18 symbols of the alphabet, or whose check character is wrong."""


def _gf_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= _POLYNOMIAL
    return product


def _weights() -> list[int]:
    weights, power = [], 1
    for _ in range(DATA_LENGTH):
        power = _gf_mul(power, 2)
        weights.append(power)
    return weights


_WEIGHTS = _weights()
# weighted[symbol][position]: the product, looked up rather than computed on every read
_WEIGHTED = {
    symbol: [_gf_mul(value, weight) for weight in _WEIGHTS] for symbol, value in _VALUE.items()
}


def check_character(data: str) -> str:
    """The check character for 17 data symbols."""
    if len(data) != DATA_LENGTH:
        raise ValueError(f"a code has {DATA_LENGTH} data symbols")
    total = 0
    for position, symbol in enumerate(data):
        total ^= _WEIGHTED[symbol][position]
    return ALPHABET[total]


def generate_code() -> str:
    """A new random code (85 random bits). The one place to change for a national rule."""
    data = "".join(secrets.choice(ALPHABET) for _ in range(DATA_LENGTH))
    return data + check_character(data)


def normalise(raw: str) -> str:
    """Read a code as a person or scanner gives it; raise InvalidCode if it is not one."""
    code = raw.translate(_SEPARATORS).upper().translate(_LOOK_ALIKES)
    if len(code) != CODE_LENGTH or any(symbol not in _VALUE for symbol in code):
        raise InvalidCode(
            f"A prescription code has {CODE_LENGTH} characters among digits and letters "
            "(no U); hyphens and spaces are ignored."
        )
    if check_character(code[:DATA_LENGTH]) != code[-1]:
        raise InvalidCode("The code's check character does not match: check for a typo.")
    return code


def is_valid(code: str) -> bool:
    try:
        return normalise(code) == code
    except InvalidCode:
        return False


def for_humans(code: str) -> str:
    """The code in groups of four: '01S2 TBPZ 2JCN ZZYG HZ'."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
