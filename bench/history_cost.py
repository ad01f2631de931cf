"""What the job history (outbox migration 5) costs the outbox's hot path.

Runs bench/outbox.py of two source trees, the baseline (before the history)
and the candidate (with it), in alternating rounds on this machine: each round
runs both back to back, in alternating order, so that the load other work puts
on the machine falls on both. For every case of bench/outbox.py it prints the
per-round ratio candidate / baseline of the case's own throughput (jobs/s;
1.00x: no cost), its median and range, and the load average.

The trees are exported with ``git archive`` (src and bench), so neither this
work tree nor its bench/results is touched by the runs::

    git archive <base> src bench | tar -x -C /tmp/base
    git archive HEAD src bench | tar -x -C /tmp/head
    .venv/bin/python bench/history_cost.py /tmp/base /tmp/head --rounds 5 -n 2000

Writes bench/results/history_cost.json (every round's figures) with --save.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import RESULTS, load_average


def run_once(tree: Path, n: int, only: str) -> dict[str, float]:
    """One run of ``tree``'s bench/outbox.py: median jobs/s by case name."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree / 'bench'}"}
    subprocess.run(
        [sys.executable, str(tree / "bench" / "outbox.py"), "-n", str(n), "--repeats", "1"]
        + ["--only", only],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=tree,
    )
    data = json.loads((tree / "bench" / "results" / "outbox.json").read_text())
    return {case["name"]: float(case["median"]) for case in data["cases"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="source tree before the history")
    parser.add_argument("candidate", type=Path, help="source tree with it")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--only", default="pg,sqlite")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    rounds: list[dict[str, object]] = []
    for number in range(args.rounds):
        order = [("baseline", args.baseline), ("candidate", args.candidate)]
        if number % 2:
            order.reverse()  # neither side always runs first
        figures = {side: run_once(tree, args.n, args.only) for side, tree in order}
        rounds.append({**figures, "load": load_average()})
        print(f"round {number + 1}/{args.rounds} done, load {load_average()}", flush=True)
    base_cases: dict[str, float] = rounds[0]["baseline"]  # type: ignore[assignment]
    print(f"\nratio = candidate / baseline jobs/s per round (1.00x: no cost), n={args.n}")
    for case in base_cases:
        ratios = [
            r["candidate"][case] / r["baseline"][case]  # type: ignore[index]
            for r in rounds
        ]
        print(
            f"  {case:<50} {statistics.median(ratios):.2f}x"
            f" ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    loads = [r["load"][0] for r in rounds]  # type: ignore[index]
    print(f"load average (1 min) over the rounds: {min(loads):.2f}-{max(loads):.2f}")
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "history_cost.json"
        path.write_text(json.dumps({"n": args.n, "rounds": rounds}, indent=2))
        print("saved", path)


if __name__ == "__main__":
    main()
