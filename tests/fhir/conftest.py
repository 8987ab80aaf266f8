"""Fixtures of the FHIR tests (helpers in tests/fhir/support.py)."""

import pytest

from tests.fhir.support import Fhir


@pytest.fixture
def fhir(http) -> Fhir:
    """The Flask test client for /fhir, checking that every answer is valid FHIR."""
    return Fhir(http)
