"""Schemathesis against our own OpenAPI document: no 5xx, no response outside the schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import register

LAB_OPERATIONS = ("/api/v1/scans", "/release", "/done")
EXAMPLES_PER_OPERATION = 100
# What the issue asks: no 5xx, nothing outside the documented statuses and schemas, and
# invalid input refused. Not "every schema-valid request is accepted": some rules (a LOINC
# code in the catalogue, an INS key) cannot be written in OpenAPI.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@pytest.fixture
def tokens(http, session_factory):
    prescriber = register(http, session_factory, "prescriber", "10005688790", "Dr Fuzz")
    lab = register(http, session_factory, "lab", "130000029", "Laboratoire Fuzz")
    return {"prescriber": prescriber.headers, "lab": lab.headers}


def role_for(operation) -> str:
    path, method = operation.path, operation.method.upper()
    is_lab = any(part in path for part in LAB_OPERATIONS) or (
        method == "PATCH" and path.endswith("{code}")
    )
    return "lab" if is_lab else "prescriber"


def fuzz(operation, headers) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_every_operation_conforms_to_the_openapi_document(api_schema, tokens):
    failures = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        try:
            fuzz(operation, tokens[role_for(operation)])
        except Exception as error:  # noqa: BLE001 - report every operation, not the first
            failures[operation.label] = str(error)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
