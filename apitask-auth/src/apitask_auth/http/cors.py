"""CORS: browser apps on other origins call the API, as GoTrue lets them.

GoTrue wraps its whole router in ``rs/cors`` (``internal/api/api.go``): any
origin, methods GET/POST/PUT/DELETE, credentials allowed (so the origin is
echoed rather than ``*``), exposed ``X-Total-Count``, ``Link`` and
``X-Supabase-Api-Version``, and a fixed list of request headers plus
``GOTRUE_CORS_ALLOWED_HEADERS``. Starlette's middleware says the same to a
browser; where its answer differs in form (a preflight is 200 and lists every
allowed method and header, one refused is 400, ``Access-Control-Max-Age: 600``
where rs/cors answers 204, echoes the request and sends no max age) no browser
decision changes. We also allow ``apikey``: supabase-js sends it on every
call, and in front of GoTrue the Supabase gateway is what accepts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware.cors import CORSMiddleware

if TYPE_CHECKING:
    from fastapi import FastAPI

    from apitask_auth.config import Settings

__all__ = ["ALLOWED_HEADERS", "EXPOSED_HEADERS", "METHODS", "install_cors"]

METHODS = ("GET", "POST", "PUT", "DELETE")
# GoTrue's list (X-JWT-AUD, X-Use-Cookie: its audience and cookie headers), and apikey.
ALLOWED_HEADERS = (
    "Accept",
    "Authorization",
    "Content-Type",
    "X-Client-IP",
    "X-Client-Info",
    "X-JWT-AUD",
    "X-Use-Cookie",
    "X-Supabase-Api-Version",
    "apikey",
)
EXPOSED_HEADERS = ("X-Total-Count", "Link", "X-Supabase-Api-Version")
# How long a browser may reuse a preflight's answer (Starlette's default).
MAX_AGE = 600


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Answer preflights and mark responses for other origins; add it last, so it is
    the outermost layer (as in GoTrue) and its headers are on every answer, 429s too."""
    extra = [name for name in settings.cors_allowed_headers if name not in ALLOWED_HEADERS]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=METHODS,
        allow_headers=[*ALLOWED_HEADERS, *extra],
        allow_credentials=True,
        expose_headers=EXPOSED_HEADERS,
        max_age=MAX_AGE,
    )
