"""Django mail: apitask's EmailBackend vs django-post-office vs Django's SMTP backend inline.

One run, one database, one SMTP sink (aiosmtpd in its own process), the test
project of tests/integration/contrib_django (djsite). Two figures per contender:

* **request cost**: what one ``send_mail`` adds to a sign-up request, in µs:
  the median time of the ``send_mail`` call inside
  ``atomic(create the user row; send_mail)``, in one process (no HTTP noise: on
  a shared machine the whole request's spread is larger than the figure);
  measured with a sink that answers at once and with one that takes 300 ms;
* **worker throughput**: mails/s from the first to the last mail the sink
  accepts, ``--mails`` queued beforehand, sent by ``manage.py apitask_worker``
  (apitask, through Django's SMTP backend in threads, the default, and through
  apitask's pooled ``SMTPClient``: ``APITASK["EMAIL_BACKEND"] =
  "apitask.mail.SMTPClient"``) or ``manage.py send_queued_mail`` (post-office)
  with the same number of concurrent sends (post-office's
  THREADS_PER_PROCESS), on the instant sink and on one that takes 50 ms per
  mail (a provider's latency). Each round runs the three workers one after
  the other (interleaved), ``--rounds`` times; the medians are printed, and
  the load average.

Usage: ``python bench/django_mail.py [--database postgresql://...|sqlite] [--mails 2000]``
(default: the PostgreSQL at $APITASK_TEST_POSTGRES_URL if set, else a SQLite file).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent / "tests" / "integration" / "contrib_django"
BACKENDS = {
    "apitask": "apitask.contrib.django.EmailBackend",
    "post-office": "post_office.EmailBackend",
    "django smtp (inline)": "django.core.mail.backends.smtp.EmailBackend",
}
CONCURRENCIES = (5, 25)
POOLED = json.dumps({"EMAIL_BACKEND": "apitask.mail.SMTPClient"})
WORKERS = ("apitask", "apitask (SMTPClient)", "post-office")


class SinkProcess:
    """smtp_sink.py in its own process; the time each accepted mail was announced."""

    def __init__(self, delay: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT / "smtp_sink.py"), "--delay", str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline().split()[1])
        self.times: list[float] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("accepted "):
                with self.changed:
                    self.times.append(time.perf_counter())
                    self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 600.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.times) >= count, timeout):
                raise SystemExit(f"the sink got {len(self.times)} of {count} mails")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def env(
    database: str, backend: str, port: int, threads: int = 5, apitask: str = "{}"
) -> dict[str, str]:
    return {
        "DJSITE_POST_OFFICE_THREADS": str(threads),
        **os.environ,
        "DJSITE_APITASK": apitask,
        "PYTHONPATH": str(PROJECT),
        "DJANGO_SETTINGS_MODULE": "djsite.settings",
        "DJSITE_DATABASE": database,
        "DJSITE_OTHER_DATABASE": f"sqlite:///{tempfile.gettempdir()}/bench-other.db",
        "DJSITE_EMAIL_BACKEND": backend,
        "DJSITE_SMTP_PORT": str(port),
        "DJSITE_POST_OFFICE": "1",
    }


def run(
    database: str, backend: str, port: int, *args: str, threads: int = 5, apitask: str = "{}"
) -> str:
    done = subprocess.run(
        args,
        cwd=PROJECT,
        env=env(database, backend, port, threads, apitask),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def manage(
    database: str, backend: str, port: int, *args: str, threads: int = 5, apitask: str = "{}"
) -> str:
    return run(
        database,
        backend,
        port,
        sys.executable,
        "manage.py",
        *args,
        threads=threads,
        apitask=apitask,
    )


def child(mode: str, count: int) -> None:
    """Runs in a project process (see ``env``): time requests, or queue mails."""
    import django

    django.setup()
    from django.core.mail import send_mail
    from django.db import transaction
    from djsite.signups.models import Signup

    run_id = secrets.token_hex(4)
    if mode == "queue":
        for i in range(count):
            send_mail("Welcome", "Hello", None, [f"q{i}-{run_id}@example.test"])
        return

    def request(i: int) -> tuple[float, float]:
        """(the send_mail call, the whole request) in seconds."""
        address = f"r{i}-{run_id}@example.test"
        started = time.perf_counter()
        with transaction.atomic():
            Signup.objects.create(email=address)
            before = time.perf_counter()
            send_mail("Welcome", "Hello", None, [address])
            after = time.perf_counter()
        return after - before, time.perf_counter() - started

    for i in range(20):  # warm up: connections, caches, the first Message-ID's FQDN
        request(-i - 1)
    timed = [request(i) for i in range(count)]
    cost = statistics.median(t[0] for t in timed) * 1e6
    whole = statistics.median(t[1] for t in timed) * 1e6
    print(json.dumps({"cost_us": cost, "request_us": whole}))


def request_cost(database: str, backend: str, port: int, count: int) -> dict[str, float]:
    out = run(
        database,
        backend,
        port,
        sys.executable,
        __file__,
        "--child",
        "request",
        "--count",
        str(count),
    )
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def throughput(database: str, name: str, sink: SinkProcess, mails: int, concurrency: int) -> float:
    """mails/s of one worker: ``name`` is one of WORKERS."""
    backend = BACKENDS[name.split()[0]]
    run(
        database,
        backend,
        sink.port,
        sys.executable,
        __file__,
        "--child",
        "queue",
        "--count",
        str(mails),
    )
    before = len(sink.times)
    if name.startswith("apitask"):
        manage(
            database,
            backend,
            sink.port,
            "apitask_worker",
            "--until-empty",
            "--concurrency",
            str(concurrency),
            "--retention",
            "0",
            apitask=POOLED if name == "apitask (SMTPClient)" else "{}",
        )
    else:
        manage(
            database,
            backend,
            sink.port,
            "send_queued_mail",
            "--processes",
            "1",
            threads=concurrency,
        )
    sink.wait_for(before + mails)
    took = sink.times[before + mails - 1] - sink.times[before]
    return (mails - 1) / took


def fresh_database(spec: str | None) -> tuple[str, str | None, str | None]:
    """(url for the project, admin url, created name) for ``--database``."""
    if spec is None:
        spec = os.environ.get("APITASK_TEST_POSTGRES_URL") or "sqlite"
    if spec == "sqlite":
        path = Path(tempfile.mkdtemp()) / "bench.db"
        return f"sqlite:///{path}", None, None
    import psycopg

    name = f"apitask_bench_{secrets.token_hex(4)}"
    with psycopg.connect(spec, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{spec.rpartition('/')[0]}/{name}", spec, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="postgresql://... (a database is created) or sqlite")
    parser.add_argument("--mails", type=int, default=2000, help="mails per throughput run")
    parser.add_argument("--requests", type=int, default=300, help="requests per cost run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--child", choices=["request", "queue"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.count)
        return

    database, admin, created = fresh_database(args.database)
    fast, slow, provider = SinkProcess(), SinkProcess(delay=0.3), SinkProcess(delay=0.05)
    try:
        manage(database, BACKENDS["apitask"], fast.port, "migrate", "--verbosity", "0")
        print(
            f"database: {database.split('://')[0]}; python {sys.version.split()[0]}; "
            f"{args.requests} requests per cost, {args.mails} mails per throughput run\n"
        )
        print(
            f"{'backend':22} {'send_mail (µs)':>15} {'300 ms SMTP (µs)':>17} {'request (µs)':>13}"
        )
        costs = {}
        for name, backend in BACKENDS.items():
            cost = request_cost(database, backend, fast.port, args.requests)
            inline = name == "django smtp (inline)"
            slow_cost = request_cost(database, backend, slow.port, 10 if inline else args.requests)
            costs[name] = cost["cost_us"]
            print(
                f"{name:22} {cost['cost_us']:>15,.0f} {slow_cost['cost_us']:>17,.0f} "
                f"{cost['request_us']:>13,.0f}"
            )
        print(
            f"\nworker mails/s, median of {args.rounds} interleaved rounds "
            "(ratios: each apitask worker / post-office, median of the rounds' ratios)"
        )
        print(
            f"{'':32} {'apitask':>9} {'SMTPClient':>11} {'post-office':>12} "
            f"{'ratio':>6} {'ratio':>6} {'load':>5}"
        )
        for sink, label, mails in (
            (fast, "instant", args.mails),
            (provider, "50 ms", args.mails // 4),
        ):
            for concurrency in CONCURRENCIES:
                rates: dict[str, list[float]] = {name: [] for name in WORKERS}
                loads = []
                for _ in range(args.rounds):
                    for name in WORKERS:
                        rates[name].append(throughput(database, name, sink, mails, concurrency))
                    loads.append(os.getloadavg()[0])
                theirs = rates["post-office"]
                ratios = [
                    statistics.median(a / b for a, b in zip(rates[name], theirs, strict=True))
                    for name in WORKERS[:2]
                ]
                median = {name: statistics.median(values) for name, values in rates.items()}
                print(
                    f"{label + ' SMTP, ' + str(concurrency) + ' concurrent sends':32} "
                    f"{median['apitask']:>9,.0f} {median['apitask (SMTPClient)']:>11,.0f} "
                    f"{median['post-office']:>12,.0f} {ratios[0]:>5.2f}x {ratios[1]:>5.2f}x "
                    f"{statistics.mean(loads):>5.1f}"
                )
                spread = ", ".join(
                    f"{name} {min(v):,.0f}-{max(v):,.0f}" for name, v in rates.items()
                )
                print(f"{'':32} range: {spread}")
        print(
            f"\nrequest cost apitask / post-office: {costs['apitask'] / costs['post-office']:.2f}x"
        )
    finally:
        for server in (fast, slow, provider):
            server.stop()
        if created is not None and admin is not None:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')


if __name__ == "__main__":
    main()
