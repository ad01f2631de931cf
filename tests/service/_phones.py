"""Helpers of the phone-flow tests: a service with phone sign-in on, fresh numbers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._texts import RecordingTexter

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from .conftest import Service

PASSWORD = "phone-secret-password"


def phone() -> str:
    """A fresh number in stored form (E.164 digits, no +)."""
    return f"1555{random.randrange(10**7):07d}"


@dataclass
class PhoneService:
    """A service with phone sign-in on, and the texts it sent."""

    svc: Service
    texter: RecordingTexter

    @property
    def http(self) -> httpx.AsyncClient:
        return self.svc.http

    async def signed_up(self, number: str | None = None) -> tuple[str, dict[str, Any]]:
        """A confirmed phone account and its session (sign-up, then the texted code)."""
        number = number or phone()
        response = await self.http.post("/signup", json={"phone": number, "password": PASSWORD})
        assert response.status_code == 200, response.text
        verified = await self.http.post(
            "/verify", json={"type": "sms", "phone": number, "token": self.texter.code(number)}
        )
        assert verified.status_code == 200, verified.text
        session: dict[str, Any] = verified.json()
        return number, session


async def phone_service(make_service: Callable[..., Any], **overrides: Any) -> PhoneService:
    """A service with ``GOTRUE_EXTERNAL_PHONE_ENABLED`` and a recording texter.

    The per-user interval between texts is a microsecond unless a test sets it:
    a test that sends twice to one number is not about it.
    """
    texter = RecordingTexter()
    settings: dict[str, Any] = {"external_phone_enabled": True, "sms_max_frequency": "1us"}
    settings |= overrides
    svc: Service = await make_service(texter=texter, **settings)
    return PhoneService(svc, texter)
