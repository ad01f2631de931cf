"""How the acceptance tests start ``apitask-auth serve --dev``: command and environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

JWT_SECRET = "acceptance-test-secret-that-is-long-enough-for-hs256"


def _service_command() -> list[str]:
    found = shutil.which("apitask-auth", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "apitask_auth.cli"]


# Resolved at import: looking up the console script stats files, not for the event loop.
SERVE_DEV = [*_service_command(), "serve", "--dev"]


def dev_environment(port: int) -> dict[str, str]:
    """This process's environment without GoTrue settings, plus a dev service on ``port``.

    No GOTRUE_SMTP_HOST, so mail goes to the dev inbox. The site URL (where
    /verify redirects) is a page of the service itself, so a browser lands on
    something real without a second server. Run it with a temp dir as cwd: the
    SQLite file is created there.
    """
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOTRUE_") and key not in {"API_EXTERNAL_URL", "DATABASE_URL"}
    }
    origin = f"http://127.0.0.1:{port}"
    return {
        **base,
        "PORT": str(port),
        "API_EXTERNAL_URL": origin,
        "GOTRUE_SITE_URL": f"{origin}/health",
        "GOTRUE_URI_ALLOW_LIST": f"{origin}/**",
        "GOTRUE_JWT_SECRET": JWT_SECRET,
        "GOTRUE_MAILER_AUTOCONFIRM": "false",
    }
