"""Schemathesis against the real service: no 5xx, no response that breaks its own schema.

The service runs as ``apitask-auth serve --dev`` in a temp dir (its own SQLite
file, mail to the dev inbox), with an ES256 signing key (``GOTRUE_JWT_KEYS``) and
anonymous sign-ins on, so ``GET /.well-known/jwks.json`` publishes a key and a
``POST /signup`` without an address signs in an anonymous user; schemathesis reads
/openapi.json from it and generates requests for every operation, without
credentials, then once more for the operations that need a signed-in user, with
a real user's token. The budget is bounded so the run fits CI:
APITASK_SCHEMATHESIS_EXAMPLES examples per operation and mode (default 30), and the
generation is derandomized so a failure in CI reproduces locally.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from ._service import JWT_SECRET, SERVE_DEV, dev_environment, generated_keys
from ._uvicorn import free_port, server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from schemathesis import Case
    from schemathesis.schemas import APIOperation
    from schemathesis.specs.openapi.schemas import OpenApiSchema

    Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = int(os.environ.get("APITASK_SCHEMATHESIS_EXAMPLES", "30"))
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# The operations behind GoTrue's requireAuthentication (routes/__init__.py's
# ``signed_in``): without a token they only ever answer 401.
SIGNED_IN_PATHS = ("/user", "/reauthenticate", "/logout", "/factors")
PASSWORD = "schemathesis-password-1"


@dataclass
class Service:
    """The running service: its schema, its URL, and what the generated requests got."""

    schema: OpenApiSchema
    url: str
    # "METHOD /path" -> the statuses answered; the anonymous sign-ups seen.
    statuses: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    anonymous_signups: int = 0

    def operations(self) -> list[Operation]:
        found = []
        for result in self.schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # the schema itself is broken
            found.append(result.ok())
        assert found, "the schema has no operations"
        return found

    def user_token(self) -> str:
        """The access token of a new, confirmed, permanent user (created by the admin API)."""
        admin = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
        email = f"schemathesis-{uuid.uuid4().hex[:12]}@example.com"
        with httpx.Client(base_url=self.url) as http:
            created = http.post(
                "/admin/users",
                json={"email": email, "password": PASSWORD, "email_confirm": True},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert created.status_code == 200, created.text
            signed_in = http.post(
                "/token",
                params={"grant_type": "password"},
                json={"email": email, "password": PASSWORD},
            )
            assert signed_in.status_code == 200, signed_in.text
            token: str = signed_in.json()["access_token"]
            return token

    def totp_factor(self, token: str) -> str:
        """The id of a TOTP factor just enrolled (unverified) by the user of ``token``."""
        enrolled = httpx.post(
            f"{self.url}/factors",
            json={"factor_type": "totp"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert enrolled.status_code == 200, enrolled.text
        factor_id: str = enrolled.json()["id"]
        return factor_id


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("schemathesis")
    environment = dev_environment(port) | {
        "GOTRUE_JWT_KEYS": generated_keys("ES256"),
        "GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED": "true",
        # Generated requests come from one address: keep them from all being 429.
        "GOTRUE_RATE_LIMIT_ANONYMOUS_USERS": "100000",
        "GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY": "100000",
    }
    with server(SERVE_DEV, env=environment, cwd=workdir) as base_url:
        yield Service(schemathesis.openapi.from_url(f"{base_url}/openapi.json"), base_url)


def check_operation(
    service: Service,
    operation: Operation,
    mode: GenerationMode,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> bool:
    """Send ``operation``'s generated ``mode`` cases (with ``headers``, and with
    ``path_parameters`` in place of the generated ones); False if it has none.

    Schemathesis's own pytest integration (``from_fixture``) does not run on
    pytest 9, so the operation's Hypothesis strategy is driven directly. A
    failure names the request with a curl line to reproduce it.
    """
    cases = operation.as_strategy(generation_mode=mode)
    if path_parameters:
        cases = cases.map(lambda case: _with_path(case, path_parameters))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Case[Any]) -> None:
        response = case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )
        service.statuses[f"{operation.method.upper()} {operation.path}"].add(response.status_code)
        if operation.path == "/signup" and response.status_code == 200:
            user = response.json().get("user") or {}
            service.anonymous_signups += user.get("is_anonymous") is True

    try:
        check()
    except Unsatisfiable:
        # No input to break (e.g. GET /health): no negative case exists.
        assert mode is GenerationMode.NEGATIVE
        return False
    return True


def _with_path(case: Case[Any], path_parameters: dict[str, str]) -> Case[Any]:
    case.path_parameters = {**(case.path_parameters or {}), **path_parameters}
    return case


def run_all(
    service: Service,
    mode: GenerationMode,
    selected: Callable[[Operation], bool],
    headers: Callable[[], dict[str, str]] | None = None,
) -> None:
    """Check every selected operation in ``mode``, each with its own ``headers()``."""
    checked = 0
    for operation in service.operations():
        if selected(operation):
            checked += check_operation(service, operation, mode, headers() if headers else None)
    if not checked:
        pytest.skip(f"no operation has {mode} cases yet")


@pytest.mark.parametrize("mode", MODES)
def test_api_answers_within_its_schema(service: Service, mode: GenerationMode) -> None:
    """Every generated request, valid or not, gets a non-5xx answer matching the schema.

    Positive cases fit the schema; negative ones break it (wrong types, missing
    fields), which is what "no 500 for any client input" is about.
    """
    run_all(service, mode, lambda _: True)
    if mode is GenerationMode.POSITIVE:
        # The new endpoints were reached, not only refused: the JWKS answered and
        # some generated sign-ups (no address, no phone) were anonymous.
        assert 200 in service.statuses["GET /.well-known/jwks.json"]
        assert service.anonymous_signups > 0, dict(service.statuses)


@pytest.mark.parametrize("mode", MODES)
def test_signed_in_operations_answer_within_their_schema(
    service: Service, mode: GenerationMode
) -> None:
    """The operations that need a user, sent with a fresh user's token per operation
    (``/logout`` or a changed password cannot spoil the next one)."""
    run_all(
        service,
        mode,
        lambda operation: operation.path.startswith(SIGNED_IN_PATHS),
        lambda: {"Authorization": f"Bearer {service.user_token()}"},
    )
    if mode is GenerationMode.POSITIVE:
        # The token was taken: the user was read (never so without credentials).
        assert 200 in service.statuses["GET /user"], dict(service.statuses)


@pytest.mark.parametrize("mode", MODES)
def test_factor_operations_on_a_real_factor_answer_within_their_schema(
    service: Service, mode: GenerationMode
) -> None:
    """/factors/{factor_id}/... with the id of a factor the caller enrolled: the
    generated bodies reach the challenge and verify logic, not only "not found"."""
    checked = 0
    for operation in service.operations():
        if operation.path.startswith("/factors/{factor_id}"):
            token = service.user_token()
            factor = {"factor_id": service.totp_factor(token)}
            headers = {"Authorization": f"Bearer {token}"}
            checked += check_operation(service, operation, mode, headers, factor)
    assert checked or mode is GenerationMode.NEGATIVE, "no /factors/{factor_id} operation"
    if mode is GenerationMode.POSITIVE:
        assert 200 in service.statuses["POST /factors/{factor_id}/challenge"], dict(
            service.statuses
        )
