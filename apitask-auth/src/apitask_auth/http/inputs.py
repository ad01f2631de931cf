"""Text the service can neither store nor send back, refused before any handler runs.

Two kinds of string get through JSON and URL decoding but break later:

* an unpaired UTF-16 surrogate (JSON ``"\\ud800"``): Python holds it, but it
  has no UTF-8 form, so the row is written and every response that would
  show it (the admin list, ``GET /user``, a login) fails to encode;
* NUL (``"\\u0000"``, ``%00``): PostgreSQL's ``text`` and ``jsonb`` cannot hold
  it, so the query fails on PostgreSQL while SQLite stores it.

:func:`reject_unstorable_input` is an app-wide dependency: it checks the
query string, the path parameters and the whole JSON body (keys and values,
at any depth) of every request, and answers 400 ``validation_failed`` naming
the field, before the handler reads anything or writes anything. The routes
take JSON bodies only (as GoTrue's do), so there is no form body to check.
"""

from __future__ import annotations

import json
import re

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime

from apitask_auth.errors import APIError, ErrorCode, bad_request

__all__ = ["find_unstorable", "reject_unstorable_input"]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The JSON escapes of NUL and of a surrogate (a pair's halves too: the walk decides).
_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _bad(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def find_unstorable(value: object) -> str | None:
    """Where the first unstorable string in a decoded JSON body is (``body
    field data.name``, ``a key of body field data``), or None when there is none.

    The walk uses its own stack: a body nested as deep as the JSON parser
    allows cannot exhaust Python's.
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _bad(item):
                return f"body field {path}" if path else "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _bad(key):
                    return f"a key of body field {path}" if path else "a key of the body"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def _plainly_storable(body: bytes) -> bool:
    """Whether ``body`` surely holds no unstorable string, found without parsing it.

    The body is decoded as ``json.loads`` decodes bytes (UTF-8, -16 or -32,
    with ``surrogatepass``: the bytes ED A0 80 become a lone surrogate), then
    searched for a NUL, a surrogate or an escape of either. Most bodies have
    none and skip the second parse; an escaped pair (``\\ud83d\\ude00``) or a
    quoted backslash is only a reason to look closer.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        return True  # not JSON: the handler's own parsing answers bad_json
    try:
        text.encode()  # a raw surrogate fails this scan (at C speed; a regex is slower)
    except UnicodeEncodeError:
        return False
    return "\x00" not in text and _ESCAPE.search(text) is None


def _refuse(where: str) -> APIError:
    return bad_request(
        ErrorCode.VALIDATION_FAILED,
        f"Invalid text in {where}: NUL characters and unpaired surrogates are not allowed",
    )


async def reject_unstorable_input(request: Request) -> None:
    """Refuse a request whose query, path or JSON body holds an unstorable string.

    Raises:
        APIError: 400 ``validation_failed``, naming where the string is.
    """
    for name, value in request.query_params.multi_items():
        if _bad(name):
            raise _refuse("a query parameter name")
        if _bad(value):
            raise _refuse(f"query parameter {name}")
    for name, value in request.path_params.items():
        if isinstance(value, str) and _bad(value):
            raise _refuse(f"path parameter {name}")
    body = await request.body()  # cached: the handler's own read gets the same bytes
    if not body or _plainly_storable(body):
        return
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the handler's own parsing answers bad_json
    where = find_unstorable(parsed)
    if where is not None:
        raise _refuse(where)
