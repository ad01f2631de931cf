"""Who may look, and proof that a form was posted from the page itself.

CSRF: signed double submit. The browser holds a random token in a cookie
(``HttpOnly``, ``SameSite=Strict``); each form carries an HMAC of it under
the dashboard's key. A POST passes when the field is the HMAC of the cookie:
another site can neither read the cookie nor, having planted one of its own
(from a sibling subdomain), compute the field without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    Auth = Callable[[Request], Any | Awaitable[Any]]

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "Csrf"]

CSRF_COOKIE = "apitask_dashboard_csrf"
CSRF_FIELD = "csrf"


class Csrf:
    """Tokens for the forms of one dashboard.

    Args:
        key: the HMAC key; give the same one to every process serving the
            dashboard (a random one by default, so a form posted to another
            process, or after a restart, is refused: reload the page).
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    @staticmethod
    def new_cookie() -> str:
        """A fresh random token for the cookie."""
        return secrets.token_urlsafe(32)

    def field(self, cookie: str) -> str:
        """The value forms carry for ``cookie``."""
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie: str | None, field: str | None) -> bool:
        """``field`` was made for ``cookie`` (constant time)."""
        if not cookie or not field:
            return False
        return hmac.compare_digest(self.field(cookie), field)
