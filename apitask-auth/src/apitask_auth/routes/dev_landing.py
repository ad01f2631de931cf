"""Dev mode's landing page: where a confirmation link leaves a person.

In dev mode the site URL is the API itself, so ``/verify`` redirects a
browser to ``/#access_token=...``, which GoTrue (and this API outside dev
mode) answers with a JSON 404. This page says who is signed in instead, or
why not, with a link back to the dev inbox. The session travels in the URL
fragment, which never reaches a server: a few lines of inline JavaScript read
it, decode the access token's payload (no signature check: it is a display)
and write it with ``textContent`` only. The server part is constant but for
the API's URL in the phone sign-in example (escaped); the CSP allows exactly
that one script, by its hash.

Phone sign-in needs no account anywhere in dev mode (it is on by default and
texts land in the dev inbox), so the page shows how to try it with curl.
"""

from __future__ import annotations

import base64
import hashlib
import html

from fastapi import Request  # noqa: TC002  # FastAPI reads the annotation at runtime
from fastapi.responses import HTMLResponse

__all__ = ["DEMO_PHONE", "LANDING_PATH", "landing"]

LANDING_PATH = "/"
INBOX_PATH = "/_dev/inbox"
DEMO_PHONE = "+15555550100"
"""The number in the page's example (555-01xx numbers are reserved for fiction)."""

_SCRIPT = """
const params = new URLSearchParams(location.hash.slice(1));
const who = document.getElementById("who");
const problem = document.getElementById("problem");
const error = params.get("error_description") || params.get("error");
if (error) {
  problem.textContent = error.replace(/\\+/g, " ");
  problem.hidden = false;
}
const token = params.get("access_token");
if (token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), c => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    who.textContent = "Signed in as " + (claims.email || claims.phone || claims.sub);
    const kind = params.get("type");
    if (kind) document.getElementById("kind").textContent = "(" + kind + " link)";
  } catch (e) {
    who.textContent = "The access token in the address could not be read.";
  }
  // The tokens have been read: keep them out of the history and of screenshots.
  history.replaceState(null, "", location.pathname);
} else {
  who.textContent = error ? "Not signed in." : "Not signed in: no session in the address.";
}
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>apitask-auth (dev mode)</title>
<style>
body{{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;
  max-width:560px;margin:60px auto;padding:0 20px}}
h1{{font-size:20px}} #who{{font-size:18px;font-weight:600}} #kind{{color:#656d76}}
#problem{{color:#cf222e;border:1px solid #ffcecb;background:#ffebe9;padding:8px 12px;
  border-radius:6px}}
a{{color:#0969da}} p.note{{color:#656d76;font-size:13px}} h2{{font-size:16px}}
pre{{background:#f6f8fa;padding:10px 12px;border-radius:6px;overflow-x:auto;font-size:12px}}
</style></head>
<body>
<h1>apitask-auth, dev mode</h1>
<p><span id="who">Reading the session in the address…</span> <span id="kind"></span></p>
<p id="problem" role="alert" hidden></p>
<p><a href="{INBOX_PATH}">Back to the dev inbox</a></p>
<h2>Try phone sign-in</h2>
<p>No SMS provider needed: in dev mode the text with the code lands in the
<a href="{INBOX_PATH}">dev inbox</a>. Ask for a code, read it, verify it:</p>
<pre id="phone-demo">{{phone_demo}}</pre>
<p class="note">This page is the site URL in dev mode (set GOTRUE_SITE_URL to your app's
URL to land there instead). It exists only in dev mode.</p>
<script>{_SCRIPT}</script>
</body></html>
"""


def _phone_demo(api: str) -> str:
    """The curl lines of a phone sign-in against ``api``, escaped for the page."""
    digits = DEMO_PHONE.lstrip("+")
    lines = (
        f"curl -X POST {api}/otp -H 'Content-Type: application/json' \\\n"
        f'  -d \'{{"phone": "{DEMO_PHONE}"}}\'\n'
        f"curl '{api}{INBOX_PATH}/texts?to={digits}&wait=10'   # the code is in \"text\"\n"
        f"curl -X POST {api}/verify -H 'Content-Type: application/json' \\\n"
        f'  -d \'{{"type": "sms", "phone": "{DEMO_PHONE}", "token": "CODE"}}\''
    )
    return html.escape(lines)


async def landing(request: Request) -> HTMLResponse:
    """The page a mailed link leads to in dev mode."""
    api = request.app.state.service.settings.api_external_url.rstrip("/")
    headers = {
        "Content-Security-Policy": _CSP,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(_PAGE.replace("{phone_demo}", _phone_demo(api)), headers=headers)
