"""The project's own durable task: one that uses the ORM, run in apitask's threads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apitask.contrib.django import in_thread
from apitask.outbox import TaskRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue


def _welcome(email: str) -> None:
    from djsite.signups.models import Signup

    Signup.objects.filter(email=email).update(welcomed=True)


class Welcome:
    """Marks a sign-up welcomed, through the ORM."""

    type = "signups.welcome"

    def __init__(self, email: str) -> None:
        self.email = email

    def payload(self) -> Mapping[str, JSONValue]:
        return {"email": self.email}

    @classmethod
    def from_payload(cls, type: str, payload: Mapping[str, JSONValue]) -> Welcome:
        return cls(str(payload["email"]))

    async def run(self) -> None:
        await in_thread(_welcome, self.email)


registry = TaskRegistry()
registry.register(Welcome.type, Welcome.from_payload)
