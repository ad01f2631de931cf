"""Histogram: values land in the first bucket whose bound holds them."""

from __future__ import annotations

import pytest

from apitask._histogram import Histogram


def test_values_are_counted_cumulatively_by_upper_bound() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    # A value equal to a bound belongs to that bound's bucket (Prometheus's "le").
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.sum == pytest.approx(3.65)


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)
