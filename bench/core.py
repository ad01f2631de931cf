"""µs per task: apitask's scope + run + wait against bare asyncio.

Each case starts N no-op tasks and waits for all of them, timed on the
same event loop, repeated; the table prints medians and the ratio to
``create_task + gather``. Target (DESIGN.md): scope + run + wait at most
1.5x that baseline.

    .venv/bin/python bench/core.py [--tasks 10000] [--repeat 15] [--uvloop] [--against DIR]

``--against DIR`` adds the scope case run on an older copy of the library
(``DIR/apitask``, e.g. from ``git archive REV src/apitask | tar -x -C DIR
--strip-components=1``), in the same rounds, and saves core-against-<loop>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apitask
from _common import Series, load_copy, save, table

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def noop() -> None:
    return None


async def gather_case(n: int) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(*[loop.create_task(noop()) for _ in range(n)])


async def taskgroup_case(n: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(noop())


async def scope_case(n: int) -> None:
    # What a handler pays: build the task, hand it over; the scope waits.
    async with apitask.scope():
        for _ in range(n):
            await apitask.run(apitask.task("bench.noop", noop))


async def scope_prebuilt_case(n: int) -> None:
    tasks = [apitask.task("bench.noop", noop) for _ in range(n)]
    async with apitask.scope():
        for t in tasks:
            await apitask.run(t)


def copy_case(lib: Any) -> Callable[[int], Awaitable[None]]:
    """``scope_case`` on another copy of the library (``--against``)."""

    async def case(n: int) -> None:
        async with lib.scope():
            for _ in range(n):
                await lib.run(lib.task("bench.noop", noop))

    return case


CASES: dict[str, Callable[[int], Awaitable[None]]] = {
    "create_task + gather": gather_case,
    "asyncio.TaskGroup": taskgroup_case,
    "apitask scope + run + wait": scope_case,
    "  same, tasks built before timing": scope_prebuilt_case,
}


async def measure(n: int, repeat: int) -> list[Series]:
    series = {name: Series(name, "us") for name in CASES}
    for fn in CASES.values():  # warm-up: imports, allocator, caches
        await fn(n)
    for _ in range(repeat):
        # Interleave the cases so drift (other load on the machine) hits all alike.
        for name, fn in CASES.items():
            gc.collect()
            start = time.perf_counter()
            await fn(n)
            series[name].values.append((time.perf_counter() - start) / n * 1e6)
    return list(series.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--against", help="a directory holding an older apitask package")
    args = parser.parse_args()
    if args.against:
        CASES["  the same, the --against copy"] = copy_case(load_copy(Path(args.against)))
    if args.uvloop:
        import uvloop

        rows = uvloop.run(measure(args.tasks, args.repeat))
    else:
        rows = asyncio.run(measure(args.tasks, args.repeat))
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(f"{args.tasks} no-op tasks, {args.repeat} runs, {loop_name} loop, µs per task")
    print(table(rows, rows[0]))
    # On a shared machine the load drifts between runs; the ratio of two
    # cases measured back to back drifts much less.
    baseline = rows[0].values
    for row in rows[1:]:
        paired = statistics.median(v / b for v, b in zip(row.values, baseline, strict=True))
        print(f"paired ratio (median of per-run ratios), {row.name.strip()}: {paired:.2f}x")
    if args.against:
        ours = rows[2].values
        paired = statistics.median(v / o for v, o in zip(rows[-1].values, ours, strict=True))
        print(f"paired ratio, the --against copy / this one (scope + run + wait): {paired:.2f}x")
    name = f"core-against-{loop_name}" if args.against else f"core-{loop_name}"
    path = save(name, rows, tasks=args.tasks, repeat=args.repeat)
    print(f"raw: {path}")


if __name__ == "__main__":
    main()
