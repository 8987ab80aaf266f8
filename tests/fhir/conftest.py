"""Fixtures of the FHIR tests (helpers in tests/fhir/support.py)."""

import pytest

from tests.fhir.support import Fhir
from tests.webhooks.conftest import hooks, receiver, run_dispatcher  # noqa: F401 (Subscription)


@pytest.fixture
def fhir(http) -> Fhir:
    """The Flask test client for /fhir, checking that every answer is valid FHIR."""
    return Fhir(http)
