"""Control for the phone case: does a service's latency depend on its pair's provider?

``bench/latency.py --phone`` compares two services whose requests alternate:
one texting through a 1 s provider, one through a 0 ms provider. This runs
the same rounds (outbox mode, SQLite) with the pair's providers as
(1 s, 0 ms), (0 ms, 0 ms) and (1 s, 1 s), in turn. If a service's p50
depended only on its own provider, the first would be the ratio the issue
asks about and the other two 1.0x; see docs/benchmarks.md, phone section.

Run: ``.venv/bin/python bench/phone_pairs.py [--n 200] [--rounds 3] [--mode outbox]``;
the printed lines are kept in bench/results/phone-pairs.txt.
"""

from __future__ import annotations

import argparse

from _common import RESULTS, load_text
from _phone import measure_phone_otp
from _service import percentile

PAIRS = {"1 s vs 0 ms": (1.0, 0.0), "0 ms vs 0 ms": (0.0, 0.0), "1 s vs 1 s": (1.0, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="requests per service and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="outbox")
    args = parser.parse_args()
    lines = [f"mode {args.mode}, {args.n} requests per service and round, p50 ms"]
    for round in range(args.rounds):
        for name, (first_delay, second_delay) in PAIRS.items():
            before = load_text()
            first, second = measure_phone_otp(
                args.mode, args.n, first_delay, fast_delay=second_delay
            )
            a, b = percentile(first, 50), percentile(second, 50)
            lines.append(
                f"round {round + 1} {name}: p50 {a:.2f} vs {b:.2f} ms ({a / b:.2f}x), "
                f"load {before} -> {load_text()}"
            )
            print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / "phone-pairs.txt"
    saved.write_text("\n".join(lines) + "\n")
    print(f"results: {saved}")


if __name__ == "__main__":
    main()
