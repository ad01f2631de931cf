"""Retry timing shared by the worker pool and the outbox."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal" jitter, and a cap on attempts.

    The n-th retry waits between half and all of ``min(cap, base * 2**(n-1))``
    seconds: never less than half, so a burst of failures cannot turn into
    a burst of instant retries, and spread over the other half, so many
    failing tasks do not retry in lock-step.

    Args:
        base: ceiling of the first delay, in seconds.
        cap: largest delay, in seconds.
        max_attempts: attempts in all, the first one included (1 = no retry).
    """

    base: float = 0.5
    cap: float = 300.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"Backoff.base must be > 0 seconds, got {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"Backoff.cap must be >= base ({self.base}), got {self.cap!r}")
        if self.max_attempts < 1:
            raise ValueError(f"Backoff.max_attempts must be >= 1, got {self.max_attempts!r}")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # 2**(attempt-1) overflows a float near 1024: stop growing well before.
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        return ceiling / 2 + rng() * ceiling / 2

    def gives_up_after(self, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts
