"""What does sending mail cost a request, in each delivery mode?

For each delivery mode, a real ``apitask-auth serve`` process and a mail
server that takes 300 ms per mail (separate processes): ``POST /recover``
for existing addresses (a mail is sent) and, interleaved, for unknown ones
(the same request, no mail). Prints p50 and p99 per mode and their ratio to
the no-mail request, writes a Markdown table to bench/results/latency.md and
a plot of the distributions to docs/img/latency.png.

Target (issue 8): in ``pool`` and ``outbox`` modes, p50 and p99 at most
1.25x the no-mail request. ``inline`` and ``request`` show the mail server's
300 ms, which is what apitask takes off the request path.

Then, for ``pool`` and ``outbox``, the same existing-address request with a
mail server that answers at once: the ratio of the two says what the slow
mail server still costs the request (nothing, if the mail is off its path),
apart from the flow's own database writes that the unknown address skips.

With ``--postgres URL`` the service runs on a fresh database of that
PostgreSQL server instead of SQLite; results then go to
bench/results/latency-postgres.* and the plot is left alone.

With ``--phone`` it measures the phone case instead (issue 17): ``POST /otp
{phone}`` with a Twilio-speaking provider that takes 1 s per message against
the same request with a 0 ms provider, both services up at once and the
requests alternating between them (bench/_phone.py), in ``--phone-rounds``
rounds per mode with the modes in turn. Target: in ``pool`` and ``outbox``,
p50 at most 1.1x the 0 ms case; ``inline`` and ``request`` (fewer requests:
each takes the second) show the provider's time. Results go to
bench/results/latency-phone.{md,json} (``-postgres`` with ``--postgres``, then
``-pause`` with ``--phone-pause``).

Run: ``.venv/bin/python bench/latency.py [--n 300] [--modes pool,outbox] [--postgres URL]``
or ``.venv/bin/python bench/latency.py --phone [--n 150] [--phone-rounds 3] [--phone-pause 0.03]``
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here
import matplotlib.pyplot as plt

from _common import RESULTS, Series, load_text, save
from _phone import measure_phone_otp
from _service import MODES, measure_recover, percentile

PHONE_MODES = ("pool", "outbox", "inline", "request")
PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "latency.png"


def plot(data: dict[str, tuple[list[float], list[float]]], delay: float, n: int) -> None:
    """Box plots of both groups per mode, log scale, to docs/img/latency.png."""
    figure, axis = plt.subplots(figsize=(2 + 1.6 * len(data), 4.8))
    labels = [
        f"{mode.replace('+', chr(10) + '+')}\n{kind}"
        for mode in data
        for kind in ("mail", "no mail")
    ]
    series = [values for pair in data.values() for values in pair]
    axis.boxplot(series, tick_labels=labels, showfliers=False, whis=(1, 99))
    axis.set_yscale("log")
    axis.tick_params(axis="x", labelsize=8)
    axis.set_ylabel("POST /recover latency, ms (log; whiskers p1-p99)")
    axis.set_title(f"Mail server at {delay * 1000:.0f} ms per mail, n={n} per box")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=110)
    print(f"plot: {PLOT}")


def phone(
    n: int,
    contrast_n: int,
    rounds: int,
    delay: float,
    modes: list[str],
    postgres: str | None,
    pause: float = 0.0,
) -> None:
    """The phone case (see the module docstring): print and save per-round ratios."""
    per_round: dict[str, list[tuple[float, float, float, float, str]]] = {m: [] for m in modes}
    # Every round's values together: a service process's luck (its core, its
    # neighbours) is one round's, and pooling rounds dilutes it.
    pooled: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in modes}
    rows: list[Series] = []
    for round in range(rounds):
        # Rotate the order so that no mode always runs first (or last) in a round.
        for mode in modes[round % len(modes) :] + modes[: round % len(modes)]:
            if mode in {"inline", "request"} and round > 0:
                continue  # contrast only: one round shows the second on the request
            count = n if mode in {"pool", "outbox"} else contrast_n
            before = load_text()
            slow, fast = measure_phone_otp(mode, count, delay, postgres=postgres, pause=pause)
            row = (
                percentile(slow, 50),
                percentile(fast, 50),
                percentile(slow, 99),
                percentile(fast, 99),
                f"{before} -> {load_text()}",
            )
            per_round[mode].append(row)
            pooled[mode][0].extend(slow)
            pooled[mode][1].extend(fast)
            print(
                f"round {round + 1} {mode}: p50 {row[0]:.1f} vs {row[1]:.1f} ms "
                f"({row[0] / row[1]:.2f}x), p99 {row[2]:.1f} vs {row[3]:.1f} ms, load {row[4]}",
                flush=True,
            )
            rows += [
                Series(f"{mode} round {round + 1} {delay * 1000:.0f} ms provider", "ms", slow),
                Series(f"{mode} round {round + 1} 0 ms provider", "ms", fast),
            ]
    lines = [
        f"| mode | round | p50, {delay * 1000:.0f} ms provider | p50, 0 ms provider "
        "| p50 ratio | p99 ratio | load (1/5/15 min, before -> after) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    summary = [
        "",
        "| mode | rounds | p50 ratio, median of rounds | min - max | p50 ratio, rounds pooled |",
        "|---|---:|---:|---|---:|",
    ]
    for mode, results in per_round.items():
        for i, (p50, q50, p99, q99, during) in enumerate(results, 1):
            lines.append(
                f"| {mode} | {i} | {p50:.1f} | {q50:.1f} | {p50 / q50:.2f}x "
                f"| {p99 / q99:.2f}x | {during} |"
            )
        ratios = sorted(p50 / q50 for p50, q50, *_ in results)
        if ratios:
            middle = statistics.median(ratios)
            slow_all, fast_all = pooled[mode]
            whole = percentile(slow_all, 50) / percentile(fast_all, 50)
            summary.append(
                f"| {mode} | {len(ratios)} | {middle:.2f}x | {ratios[0]:.2f}x - {ratios[-1]:.2f}x "
                f"| {whole:.2f}x |"
            )
    report = "\n".join(lines + summary)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    # A paused client's run is a different experiment: it must not replace the table.
    name = "latency-phone" + ("-postgres" if postgres else "") + ("-pause" if pause else "")
    (RESULTS / f"{name}.md").write_text(report + "\n")
    database = "postgresql" if postgres else "sqlite"
    saved = save(
        name, rows, n=n, contrast_n=contrast_n, rounds=rounds, delay=delay, database=database
    )
    print(f"results: {saved}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="requests per group")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds per mail")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--instant-modes",
        default="pool,outbox",
        help="modes also measured with a 0 ms mail server ('' for none)",
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="run the service on this PostgreSQL server"
    )
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot from bench/results/latency.json"
    )
    parser.add_argument("--phone", action="store_true", help="the phone case instead (issue 17)")
    parser.add_argument("--phone-rounds", type=int, default=3, help="rounds per mode (--phone)")
    parser.add_argument(
        "--contrast-n", type=int, default=15, help="requests in inline and request (--phone)"
    )
    parser.add_argument(
        "--phone-pause",
        type=float,
        default=0.0,
        help="seconds the client waits before each request (--phone; see docs/benchmarks.md)",
    )
    args = parser.parse_args()
    if args.phone:
        modes = args.modes.split(",") if args.modes != ",".join(MODES) else list(PHONE_MODES)
        delay = args.delay if args.delay != 0.3 else 1.0
        phone(
            args.n,
            args.contrast_n,
            args.phone_rounds,
            delay,
            modes,
            args.postgres,
            args.phone_pause,
        )
        return
    if args.replot:
        saved = json.loads((RESULTS / "latency.json").read_text())
        values = {case["name"]: case["values"] for case in saved["cases"]}
        modes = [name.removesuffix(" with mail") for name in values if name.endswith(" with mail")]
        data = {m: (values[f"{m} with mail"], values[f"{m} no mail"]) for m in modes}
        plot(data, saved["delay"], saved["n"])
        return
    modes = args.modes.split(",")
    name = "latency-postgres" if args.postgres else "latency"

    def measure(mode: str, delay: float) -> tuple[list[float], list[float]]:
        known, unknown, _ = measure_recover(mode, args.n, delay, args.postgres)
        return known, unknown

    data = {mode: measure(mode, args.delay) for mode in modes}

    lines = [
        "| mode | mail p50 (ms) | mail p99 (ms) | no-mail p50 (ms) | no-mail p99 (ms) "
        "| p50 ratio | p99 ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows: list[Series] = []
    for mode, (mail, none) in data.items():
        p50, p99 = percentile(mail, 50), percentile(mail, 99)
        q50, q99 = percentile(none, 50), percentile(none, 99)
        lines.append(
            f"| {mode} | {p50:.1f} | {p99:.1f} | {q50:.1f} | {q99:.1f} "
            f"| {p50 / q50:.2f}x | {p99 / q99:.2f}x |"
        )
        rows += [Series(f"{mode} with mail", "ms", mail), Series(f"{mode} no mail", "ms", none)]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(report + "\n")

    # The same known-address request with a mail server that answers at once:
    # if the mail is off the request path, the 300 ms server costs nothing.
    instant = [m for m in args.instant_modes.split(",") if m]
    lines = [
        "",
        f"| mode | mail p50, {args.delay * 1000:.0f} ms server | mail p50, 0 ms server "
        "| p50 ratio | p99 ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in instant:
        slow = (data[mode] if mode in data else measure(mode, args.delay))[0]
        fast = measure(mode, 0.0)[0]
        lines.append(
            f"| {mode} | {percentile(slow, 50):.1f} | {percentile(fast, 50):.1f} "
            f"| {percentile(slow, 50) / percentile(fast, 50):.2f}x "
            f"| {percentile(slow, 99) / percentile(fast, 99):.2f}x |"
        )
        rows.append(Series(f"{mode} with mail, 0 ms server", "ms", fast))
    if instant:
        print("\n".join(lines))
        with (RESULTS / f"{name}.md").open("a") as out:
            out.write("\n".join(lines) + "\n")

    if not args.postgres:  # the docs' plot is of the embedded default
        plot(data, args.delay, args.n)
    database = "postgresql" if args.postgres else "sqlite"
    saved = save(name, rows, n=args.n, delay=args.delay, database=database)
    print(f"results: {saved}")


if __name__ == "__main__":
    main()
