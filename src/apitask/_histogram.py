"""A fixed-bucket latency histogram: cheap to observe, no metrics library needed."""

from __future__ import annotations

import itertools
from bisect import bisect_left

__all__ = ["LATENCY_BUCKETS", "Histogram"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds in seconds, from a local relay (milliseconds) to a slow remote server."""


class Histogram:
    """Counts of observed values by upper bound, plus their sum.

    ``observe`` is one binary search and two additions, so it can sit on a
    send path; Prometheus exporters read :meth:`cumulative`. Values above
    the last bound are counted in the implicit ``+Inf`` bucket.

    Args:
        bounds: increasing upper bounds (each bucket holds values <= bound).
    """

    __slots__ = ("_counts", "bounds", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        if not bounds or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError("histogram bounds must be non-empty and strictly increasing")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self._counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, values <= bound)`` pairs ending with ``("+Inf", count)``."""
        pairs: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self._counts, strict=True):
            total += n
            pairs.append((bound, total))
        return pairs
