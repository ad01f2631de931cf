"""The inbox page: server-rendered HTML, no JavaScript, every value escaped.

Mail HTML is untrusted (a template bug or a hostile sign-up name can put markup
in it). It is shown only inside ``<iframe sandbox srcdoc=...>``: no scripts, an
opaque origin, and links opening in a new tab. The page's own CSP (see
``PAGE_CSP``) also blocks scripts, so escaping mistakes would still be inert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from ._message import CaughtMessage
    from ._text import CaughtText

__all__ = ["BODY_CSP", "PAGE_CSP", "render_inbox"]

# The page: inline CSS only; images for mail bodies that show a logo.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# A mail's HTML served on its own: sandboxed even when opened directly.
BODY_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline'; img-src data: http: https:; base-uri 'none'"
)
_IFRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"

_STYLE = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--accent:#0969da;--sel:#ddf4ff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);
  background:#fff}
header{display:flex;align-items:center;gap:16px;padding:10px 20px;
  border-bottom:1px solid var(--line);background:var(--bg)}
header h1{font-size:17px;margin:0}
header .info{color:var(--muted);flex:1}
header .info a{color:var(--accent)}
header form{margin:0;display:flex;gap:6px}
input[type=search]{padding:4px 8px;border:1px solid var(--line);border-radius:6px;width:220px}
button,.button{font:inherit;padding:4px 12px;border:1px solid var(--line);border-radius:6px;
  background:#fff;color:var(--fg);cursor:pointer;text-decoration:none}
button.danger{color:#cf222e}
main{display:grid;grid-template-columns:minmax(280px,380px) 1fr;height:calc(100vh - 53px)}
nav{border-right:1px solid var(--line);overflow-y:auto}
nav a{display:block;padding:10px 16px;border-bottom:1px solid var(--line);color:inherit;
  text-decoration:none}
nav a:hover{background:var(--bg)}
nav a.selected{background:var(--sel)}
nav .row{display:flex;justify-content:space-between;gap:8px}
nav .to{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
nav time{color:var(--muted);font-size:12px;white-space:nowrap}
nav .subject{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
section{overflow-y:auto;padding:16px 24px}
section h2{margin:0 0 8px;font-size:20px}
table.meta{border-collapse:collapse;margin-bottom:12px}
table.meta th{text-align:right;color:var(--muted);font-weight:normal;padding:1px 10px 1px 0;
  vertical-align:top}
table.meta td{word-break:break-all}
.links{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px 12px;
  margin-bottom:12px}
.links h3,details summary{font-size:13px;font-weight:600;margin:0 0 4px}
.links ol{margin:0;padding-left:20px}
.links a{color:var(--accent);word-break:break-all}
details{margin:10px 0}
details summary{cursor:pointer}
summary a{color:var(--accent);font-weight:normal}
iframe{width:100%;height:50vh;border:1px solid var(--line);border-radius:6px;background:#fff;
  resize:vertical}
pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);
  border:1px solid var(--line);border-radius:6px;padding:10px;margin:0}
.empty{color:var(--muted);padding:40px;text-align:center}
.texts{border-bottom:2px solid var(--line)}
.texts h3{font-size:13px;margin:0;padding:8px 16px;background:var(--bg)}
.texts .text{padding:8px 16px;border-top:1px solid var(--line)}
.texts .channel{color:var(--muted);font-size:11px}
"""


def render_inbox(
    messages: list[CaughtMessage],
    *,
    selected: CaughtMessage | None,
    prefix: str,
    smtp_address: tuple[str, int] | None,
    to_filter: str | None,
    total: int,
    capacity: int,
    texts: list[CaughtText] | None = None,
) -> str:
    """The whole inbox page: toolbar, text messages, mail list and (when chosen) one mail."""
    refresh = "" if selected is not None else '<meta http-equiv="refresh" content="5">'
    listening = (
        f"SMTP on {escape(smtp_address[0])}:{smtp_address[1]}"
        if smtp_address is not None
        else "SMTP catcher stopped"
    )
    shown = f"{len(messages)} of {total}" if to_filter else f"{total}"
    show_all = f' (<a href="{escape(prefix)}">show all</a>)' if to_filter else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>Dev inbox ({total})</title><style>{_STYLE}</style></head>
<body>
<header>
<h1>Dev inbox</h1>
<span class="info">{shown} message{"" if total == 1 else "s"}{show_all} \
· keeps the last {capacity} · {listening}</span>
<form method="get" action="{escape(prefix)}" role="search">
<input type="search" name="to" placeholder="Filter by recipient" \
value="{escape(to_filter or "")}" aria-label="Filter by recipient">
<button type="submit">Filter</button></form>
<a class="button" id="refresh" href="{escape(_page_url(prefix, to_filter, selected))}">Refresh</a>
<form method="post" action="{escape(prefix)}/clear">
<button class="danger" id="clear" type="submit">Clear all</button></form>
</header>
<main>
<nav aria-label="Messages">{_render_texts(texts or [])}\
{_render_list(messages, selected, prefix, to_filter)}</nav>
<section>{_render_message(selected, prefix) if selected is not None else _placeholder(messages)}\
</section>
</main>
</body></html>
"""


def _page_url(prefix: str, to_filter: str | None, selected: CaughtMessage | None) -> str:
    query = {}
    if to_filter:
        query["to"] = to_filter
    if selected is not None:
        query["id"] = selected.id
    return f"{prefix}?{urlencode(query)}" if query else prefix


def _render_list(
    messages: list[CaughtMessage],
    selected: CaughtMessage | None,
    prefix: str,
    to_filter: str | None,
) -> str:
    if not messages:
        if to_filter:
            return f'<p class="empty">No mail for {escape(to_filter)} yet.</p>'
        return '<p class="empty">No mail yet. This page refreshes by itself.</p>'
    items = []
    for message in messages:
        css = ' class="selected"' if selected is not None and message.id == selected.id else ""
        recipients = ", ".join(message.to or message.envelope_to) or "(no recipient)"
        href = _page_url(prefix, to_filter, message)
        items.append(
            f'<a{css} href="{escape(href)}" data-id="{escape(message.id)}">'
            f'<div class="row"><span class="to">{escape(recipients)}</span>'
            f"{_time(message.received_at)}</div>"
            f'<div class="subject">{escape(message.subject or "(no subject)")}</div></a>'
        )
    return "".join(items)


def _render_texts(texts: list[CaughtText]) -> str:
    # Short and whole: a text is shown in the list itself, code and all.
    if not texts:
        return ""
    items = "".join(
        f'<div class="text" data-id="{escape(text.id)}">'
        f'<div class="row"><span class="to">{escape(text.to)}</span>'
        f"{_time(text.received_at)}</div>"
        f'<div class="channel">{escape(text.channel.upper())}</div>'
        f"<pre>{escape(text.text)}</pre></div>"
        for text in texts
    )
    return f'<div class="texts"><h3>Text messages ({len(texts)})</h3>{items}</div>'


def _time(moment: datetime) -> str:
    now = datetime.now(UTC)
    shown = moment.strftime("%H:%M:%S" if moment.date() == now.date() else "%b %d, %H:%M")
    return f'<time datetime="{moment.isoformat()}" title="{moment.isoformat()}">{shown}</time>'


def _placeholder(messages: list[CaughtMessage]) -> str:
    hint = "Choose a message on the left." if messages else "Mail the service sends shows here."
    return f'<p class="empty">{hint}</p>'


def _render_message(message: CaughtMessage, prefix: str) -> str:
    rows = [
        ("From", message.from_ or message.envelope_from),
        ("To", ", ".join(message.to or message.envelope_to)),
        ("Cc", ", ".join(message.cc)),
        ("Date", message.date.strftime("%a, %d %b %Y %H:%M:%S %z") if message.date else ""),
        ("Received", message.received_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Message-ID", message.message_id),
    ]
    meta = "".join(
        f"<tr><th>{name}</th><td>{escape(value)}</td></tr>" for name, value in rows if value
    )
    links = "".join(
        f'<li><a href="{escape(link)}" rel="noreferrer">{escape(link)}</a></li>'
        for link in message.links
    )
    links_box = (
        f'<div class="links" id="links"><h3>Links</h3><ol>{links}</ol></div>' if links else ""
    )
    parts = []
    if message.html is not None:
        parts.append(
            '<details open id="html"><summary>HTML '
            f'(<a href="{escape(prefix)}/messages/{escape(message.id)}/html" target="_blank" '
            f'rel="noreferrer">open alone</a>)</summary>'
            f'<iframe title="HTML body" sandbox="{_IFRAME_SANDBOX}" referrerpolicy="no-referrer" '
            f'srcdoc="{escape(_framed(message.html))}"></iframe></details>'
        )
    if message.text is not None:
        open_ = "" if message.html is not None else " open"
        parts.append(
            f'<details{open_} id="text"><summary>Text</summary>'
            f"<pre>{escape(message.text)}</pre></details>"
        )
    headers = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"
        for name, value in message.headers
    )
    parts.append(
        f'<details id="headers"><summary>Headers (<a href="{escape(prefix)}/messages/'
        f'{escape(message.id)}/raw">source</a>)</summary>'
        f'<table class="meta">{headers}</table></details>'
    )
    return (
        f'<h2 id="subject">{escape(message.subject or "(no subject)")}</h2>'
        f'<table class="meta">{meta}</table>{links_box}{"".join(parts)}'
    )


def _framed(html: str) -> str:
    # Links in the mail open in a new tab (the sandbox allows popups), not in the frame.
    return f'<base target="_blank">{html}'
