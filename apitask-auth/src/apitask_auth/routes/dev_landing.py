"""Dev mode's landing page: where a confirmation link leaves a person.

In dev mode the site URL is the API itself, so ``/verify`` redirects a
browser to ``/#access_token=...``, which GoTrue (and this API outside dev
mode) answers with a JSON 404. This page says who is signed in instead, or
why not, with a link back to the dev inbox. The session travels in the URL
fragment, which never reaches a server: a few lines of inline JavaScript read
it, decode the access token's payload (no signature check: it is a display)
and write it with ``textContent`` only. The server part is constant, so there
is nothing to escape; the CSP allows exactly that one script, by its hash.
"""

from __future__ import annotations

import base64
import hashlib

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["LANDING_PATH", "router"]

LANDING_PATH = "/"
INBOX_PATH = "/_dev/inbox"

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
    who.textContent = "Signed in as " + (claims.email || claims.sub);
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
a{{color:#0969da}} p.note{{color:#656d76;font-size:13px}}
</style></head>
<body>
<h1>apitask-auth, dev mode</h1>
<p><span id="who">Reading the session in the address…</span> <span id="kind"></span></p>
<p id="problem" role="alert" hidden></p>
<p><a href="{INBOX_PATH}">Back to the dev inbox</a></p>
<p class="note">This page is the site URL in dev mode (set GOTRUE_SITE_URL to your app's
URL to land there instead). It exists only in dev mode.</p>
<script>{_SCRIPT}</script>
</body></html>
"""

router = APIRouter(include_in_schema=False)


@router.get(LANDING_PATH)
async def landing() -> HTMLResponse:
    """The page a mailed link leads to in dev mode."""
    headers = {
        "Content-Security-Policy": _CSP,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(_PAGE, headers=headers)
