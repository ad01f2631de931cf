"""Shared helpers for the benchmarks: repeat, summarise, print ratios.

Every benchmark measures its baseline in the same run and prints our figure
as a ratio to it: absolute numbers drift between machines and runs (see
../shared/peers/RESULTS.md), ratios measured side by side do not as much.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

RESULTS = Path(__file__).resolve().parent / "results"

# One ASGI GET / request, for benches that drive an app in process (no server).
GET_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("bench", 80),
}


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (it is shared)."""
    return [round(v, 2) for v in os.getloadavg()]


def load_text() -> str:
    """:func:`load_average` as a table cell: ``"5.37 4.56 5.16"``."""
    return " ".join(f"{v:.2f}" for v in load_average())


@dataclass
class Series:
    """Repeated measurements of one case (lower is better unless said)."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: a crude noise indicator."""
        return (max(self.values) - min(self.values)) / self.median * 100 if self.median else 0.0


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes on the monotonic clock."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def table(rows: list[Series], baseline: Series, *, higher_is_better: bool = False) -> str:
    """Render the series as a text table with a ratio column against ``baseline``."""
    lines = [f"{'case':<44} {'median':>12} {'spread':>8} {'ratio':>8}"]
    for row in rows:
        ratio = row.median / baseline.median if baseline.median else float("nan")
        lines.append(
            f"{row.name:<44} {row.median:>10.3f} {row.unit:<2}"
            f"{row.spread_pct:>6.0f}% {ratio:>7.2f}x"
        )
    note = "higher is better" if higher_is_better else "lower is better"
    lines.append(f"(ratio = case / {baseline.name!r}; {note})")
    return "\n".join(lines)


def save(name: str, rows: list[Series], **extra: object) -> Path:
    """Write the raw values and the environment to bench/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "cases": [asdict(r) | {"median": r.median} for r in rows],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def load_copy(directory: Path) -> ModuleType:
    """Import ``directory/apitask`` as the package ``apitask_before``."""
    init = directory / "apitask" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "apitask_before", init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        sys.exit(f"no apitask package in {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["apitask_before"] = module
    spec.loader.exec_module(module)
    return module
