"""Schemathesis over the document a running API serves, with a valid token: no answer is a
server error, and every answer (status, content type, headers, body) is one the document
describes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mhst_tracker.api.intake import NDJSON
from tests.api.conftest import Api, ApiFactory

pytestmark = pytest.mark.kafka

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schemathesis.serializer(NDJSON)
def _ndjson(_context: schemathesis.SerializationContext, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An API whose rate limit schemathesis cannot reach, with a token for T1 and T2."""
    factory = ApiFactory(kafka_bootstrap, tmp_path_factory.mktemp("schemathesis"))
    try:
        yield asyncio.run(
            factory.start({"MHST_API_RATE_LIMIT": "100000", "MHST_API_RATE_BURST": "100000"})
        )
    finally:
        factory.stop_all()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_served_document_holds_for_every_answer(served: Api, mode: GenerationMode) -> None:
    document = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    headers = {"Authorization": f"Bearer {served.tokens['emis']}"}
    operations = []
    for result in document.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert {operation.label for operation in operations} == {
        "POST /v1/events",
        "GET /healthz",
        "GET /readyz",
    }
    statuses: Counter[int] = Counter()
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to break: no parameters, no body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses[response.status_code] += 1

        answers_as_documented()
    # Some generated requests passed every refusal and had their events produced.
    assert statuses[202], statuses
