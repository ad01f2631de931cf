"""A second real client: supabase-js from the npm registry, against ``apitask-auth serve``.

tests/js/supabase_flows.mjs drives supabase-js (pinned by tests/js/package-lock.json,
installed by scripts/install-node-deps) through sign-up with the mailed code, sign-in
with a password, ``getClaims()`` with an ES256 key set made by ``apitask-auth keys
generate``, an anonymous sign-in converted to a permanent user, and a TOTP factor
enrolled, challenged and verified (codes from the ``otpauth`` package), and the
phone flows (sign-up with a phone and a password, resend, verify; OTP sign-in;
a phone change; a phone MFA factor) with the codes texted through the real SMS
chain into the dev inbox and read from its JSON API, in each delivery mode. It
prints one JSON line per step; a failure here names the step and its error.
Without Node locally the test skips; in CI (APITASK_REQUIRE_NODE=1) it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from ._node import SCRIPTS, require_node
from ._service import JWT_SECRET, SERVE_DEV, dev_environment, generated_keys
from ._uvicorn import ServerProcess, free_port
from .conftest import DELIVERY_MODES

if TYPE_CHECKING:
    from collections.abc import Iterator

# In the order the script runs them: later steps use the user and session of earlier ones.
STEPS = (
    "signup",
    "signin",
    "claims",
    "anonymous",
    "totp",
    "phone_signup",
    "phone_otp",
    "phone_change",
    "phone_mfa",
)
SCRIPT_TIMEOUT = 180.0
JWKS_REQUEST = '"GET /.well-known/jwks.json HTTP/1.1" 200'


@dataclass(frozen=True)
class JsTarget:
    """A running service with an ES256 key set, and the node that will drive it."""

    node: str
    process: ServerProcess
    key: dict[str, str]


@pytest.fixture(scope="module", params=DELIVERY_MODES)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JsTarget]:
    """Autoconfirm off, anonymous and phone sign-ins on, tokens signed by a generated
    ES256 key; no SMS provider, so dev mode texts into its inbox."""
    node = require_node()  # skip (or fail in CI) before starting anything
    keys = generated_keys("ES256")
    [key] = json.loads(keys)
    tmp = tmp_path_factory.mktemp(f"js-{request.param}")
    environment = dev_environment(free_port()) | {
        "DATABASE_URL": f"sqlite:///{tmp / 'auth.db'}",
        "GOTRUE_MAILER_DELIVERY": request.param,
        "GOTRUE_JWT_KEYS": keys,
        "GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED": "true",
        "GOTRUE_EXTERNAL_PHONE_ENABLED": "true",
        # The phone steps text one number more than once; the interval is not under test.
        "GOTRUE_SMS_MAX_FREQUENCY": "1us",
        "GOTRUE_MFA_PHONE_ENROLL_ENABLED": "true",
        "GOTRUE_MFA_PHONE_VERIFY_ENABLED": "true",
    }
    process = ServerProcess(SERVE_DEV, env=environment, cwd=tmp)
    try:
        process.wait_ready()
        yield JsTarget(node, process, key)
    finally:
        process.stop()


def run_steps(target: JsTarget, steps: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Run the script's ``steps``; their JSON lines by step name, or fail naming the step."""
    anon_key = jwt.encode({"role": "anon"}, JWT_SECRET, algorithm="HS256")
    done = subprocess.run(
        [target.node, str(SCRIPTS / "supabase_flows.mjs"), *steps],
        cwd=SCRIPTS,
        env={**os.environ, "AUTH_URL": target.process.url, "ANON_KEY": anon_key},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = {line["step"]: line for line in lines}
    context = f"(node exit {done.returncode}; stderr: {done.stderr.strip()!r})"
    for step in steps:
        line = results.get(step)
        assert line is not None, f"supabase-js step {step!r} did not run {context}"
        assert line["ok"], (
            f"supabase-js step {step!r} failed: {line['error']}\n"
            f"server log:\n{target.process.log[-4000:]}"
        )
    assert done.returncode == 0, f"the script failed after its steps {context}"
    return results


def test_supabase_js_email_anonymous_totp_and_phone_flows(target: JsTarget) -> None:
    results = run_steps(target, STEPS)
    signed_in = results["signin"]
    assert (signed_in["alg"], signed_in["kid"]) == ("ES256", target.key["kid"])
    # getClaims checked the signature itself with the published key: the client
    # asked the JWKS endpoint (and not GET /user), and the server answered it.
    claims = results["claims"]
    assert claims["requests"] == ["GET /.well-known/jwks.json"]
    assert claims["forged_error"] == "AuthInvalidJwtError"
    assert target.process.wait_for_output(JWKS_REQUEST, timeout=10), target.process.log
    assert results["anonymous"]["user_id"] != results["signup"]["user_id"]
    # The verified factor raised the signed-in session: aal2, with totp in its amr.
    totp = results["totp"]
    assert (totp["aal"], totp["amr"][0]) == ("aal2", "totp")
    # The phone user is its own (not the e-mail one), signed in again by a texted
    # code (amr "otp"), then moved to a new number.
    phone = results["phone_signup"]
    assert phone["user_id"] not in {results["signup"]["user_id"], results["anonymous"]["user_id"]}
    assert results["phone_otp"]["user_id"] == phone["user_id"]
    assert results["phone_otp"]["amr"] == ["otp"]
    changed = results["phone_change"]
    assert changed["user_id"] == phone["user_id"] and changed["phone"] != phone["phone"]
    phone_mfa = results["phone_mfa"]
    assert (phone_mfa["aal"], phone_mfa["amr"][0]) == ("aal2", "mfa/phone")
