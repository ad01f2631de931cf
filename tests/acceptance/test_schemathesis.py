"""Schemathesis against the real service: no 5xx, no response that breaks its own schema.

The service runs as ``apitask-auth serve --dev`` in a temp dir (its own SQLite
file, mail to the dev inbox); schemathesis reads /openapi.json from it and
generates requests for every operation. The budget is bounded so the run fits
CI: APITASK_SCHEMATHESIS_EXAMPLES examples per operation and mode (default 30), and the
generation is derandomized so a failure in CI reproduces locally.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from ._service import SERVE_DEV, dev_environment
from ._uvicorn import free_port, server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemathesis import Case
    from schemathesis.specs.openapi.schemas import OpenApiSchema

EXAMPLES = int(os.environ.get("APITASK_SCHEMATHESIS_EXAMPLES", "30"))


@pytest.fixture(scope="module")
def service_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenApiSchema]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("schemathesis")
    with server(SERVE_DEV, env=dev_environment(port), cwd=workdir) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_within_its_schema(service_schema: OpenApiSchema, mode: GenerationMode) -> None:
    """Every generated request, valid or not, gets a non-5xx answer matching the schema.

    Positive cases fit the schema; negative ones break it (wrong types, missing
    fields), which is what "no 500 for any client input" is about. Schemathesis's
    own pytest integration (``from_fixture``) does not run on pytest 9, so each
    operation's Hypothesis strategy is driven directly.
    """
    operations = []
    for result in service_schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the schema itself is broken
        operations.append(result.ok())
    assert operations, "the schema has no operations"
    checked = 0
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Case[Any]) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        try:
            check()  # a failure names the request with a curl line to reproduce it
        except Unsatisfiable:
            # No input to break (e.g. GET /health): no negative case exists.
            assert mode is GenerationMode.NEGATIVE
            continue
        checked += 1
    if not checked:
        pytest.skip(f"no operation has {mode} cases yet")
