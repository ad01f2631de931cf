"""Can an attacker tell by response time whether an address has an account?

For each delivery mode, a real ``apitask-auth serve`` process and a mail
server that takes 300 ms per mail (both separate processes): ``POST
/recover`` for N existing and N unknown addresses, interleaved, one request
at a time. Printed per mode: p50 and p99 of each group, their ratio
(existing / unknown), and the two-sided Mann-Whitney U test's p-value (a
small p means the groups are distinguishable).

Targets (issue 7): in ``pool`` and ``outbox`` modes, p50 and p99 ratios
<= 1.25 and p > 0.01. ``inline`` and ``request`` are the contrast: there
the 300 ms of the mail server shows. Every mode runs with the service's
response-time matching off, so the figures are the delivery mode's own;
``inline+match`` shows the documented way to close the gap in inline mode
(GOTRUE_SECURITY_MATCH_RESPONSE_TIMES, on by default in the service).

Run: ``.venv/bin/python bench/enumeration.py`` [--n 500] [--modes pool,outbox,...]
"""

from __future__ import annotations

import argparse

from scipy.stats import mannwhitneyu

from _common import Series, save
from _service import MODES, measure_recover, percentile


def run_mode(mode: str, n: int, delay: float) -> dict[str, float]:
    known_ms, unknown_ms, delivered = measure_recover(mode, n, delay)
    test = mannwhitneyu(known_ms, unknown_ms, alternative="two-sided")
    return {
        "existing_p50": percentile(known_ms, 50),
        "existing_p99": percentile(known_ms, 99),
        "unknown_p50": percentile(unknown_ms, 50),
        "unknown_p99": percentile(unknown_ms, 99),
        "ratio_p50": percentile(known_ms, 50) / percentile(unknown_ms, 50),
        "ratio_p99": percentile(known_ms, 99) / percentile(unknown_ms, 99),
        "mann_whitney_p": float(test.pvalue),
        "delivered": delivered,
        "sent": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="addresses per group")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds per mail")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    results = {mode: run_mode(mode, args.n, args.delay) for mode in args.modes.split(",")}
    print(
        f"{'mode':<8} {'exist p50':>10} {'unkn p50':>9} {'ratio':>6} "
        f"{'exist p99':>10} {'unkn p99':>9} {'ratio':>6} {'MW p':>8} {'mails':>9}"
    )
    for mode, r in results.items():
        verdict = ""
        if mode.partition("+")[0] in ("pool", "outbox"):
            ok = r["ratio_p50"] <= 1.25 and r["ratio_p99"] <= 1.25 and r["mann_whitney_p"] > 0.01
            verdict = "  target met" if ok else "  target MISSED"
        print(
            f"{mode:<8} {r['existing_p50']:>8.2f}ms {r['unknown_p50']:>7.2f}ms "
            f"{r['ratio_p50']:>6.2f} {r['existing_p99']:>8.2f}ms {r['unknown_p99']:>7.2f}ms "
            f"{r['ratio_p99']:>6.2f} {r['mann_whitney_p']:>8.3g} "
            f"{int(r['delivered']):>4}/{int(r['sent']):<4}{verdict}"
        )
    rows = [
        Series(f"{mode} {key}", "ms" if "p" in key[-3:] else "", [value])
        for mode, r in results.items()
        for key, value in r.items()
    ]
    print(f"results: {save('enumeration', rows, n=args.n, delay=args.delay)}")


if __name__ == "__main__":
    main()
