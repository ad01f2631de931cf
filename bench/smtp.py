"""Mail throughput: our Message -> bytes -> pooled SMTPClient against what an app does alone.

Run: ``.venv/bin/python bench/smtp.py`` (about a minute; ``--quick`` for a
smoke run). Needs Postfix's ``smtp-sink``: when it is missing and we are
root, it is installed from Debian (``postfix`` with the mailer type preseeded
to "No configuration", as ../shared/peers/setup.sh does); no Postfix daemon
is ever started. Every server is on 127.0.0.1, on a free port, and stopped by
its PID.

1. Throughput to ``smtp-sink`` of 2 KB text+HTML messages, each with its
   Message-ID, all in the same run:

   (a) the baseline: build an ``email.message.EmailMessage`` (text + HTML
       alternative, ``make_msgid()``, ``formatdate()``) and send it with
       ``aiosmtplib.send``: one connection per message, sequential. Library
       defaults, as an app would write it (``make_msgid()`` looks the host
       name up on each call; aiosmtplib looks up the FQDN per connection);
   (a') the same with those two lookups given (``domain=``, ``local_hostname=``);
   (b) the same as (a) with ``smtplib``;
   (c) ours: ``Message`` -> ``SMTPClient.send`` with pool_size N and N sends
       in flight, N = 1, 4, 8.

   Target: (c) at least 3x (a).
2. Against ``smtp-sink -w 1`` (every DATA reply delayed by 1 s): messages/s
   with pool_size N and N sends in flight. Target: at least 0.8 x N msg/s.
3. ESMTP PIPELINING (issue 19, P5), interleaved rounds, before = the same
   client with ``pipelining=False``:
   (a) the sink's limit: Postfix's own ``smtp-source`` (C) with 32 sessions
       reusing their connections (``-d``), 2 KB messages; ours with
       pipelining off and on, pool_size 1, 4, 8, as a share of that limit.
       Target: at least 25%.
   (b) behind ``_latency_proxy.py`` (every byte the sink sends delivered
       20 ms late, as over a distant link), pool_size 1, one send at a time:
       msg/s per connection, on / off. Target: at least 2x.
4. CHUNKING (RFC 3030) with PIPELINING: one round trip per mail (issue 19,
   P5). smtp-sink does not offer CHUNKING (with it our client falls back to
   section 3's path), so this runs against Postfix's own smtpd, a private
   instance that throws the mail away (``discard``), started by
   tests/integration/mail/postfix_server.py (root only). Interleaved rounds,
   before = the same client with ``pipelining=False``:
   (a) the server's limit: ``smtp-source -s 32 -d`` against that smtpd; ours
       with CHUNKING, pool_size 1, 4, 8, and pool_size 8 with DATA
       pipelined (``chunking=False``) and with pipelining off, as a share
       of it;
   (b) behind ``_latency_proxy.py`` (+20 ms per reply), pool_size 1, one
       send at a time: msg/s per connection with CHUNKING, with DATA
       pipelined, and with pipelining off. Target: CHUNKING / off >= 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from _common import Series, save, table
from _service import HERE, helper_process
from apitask.mail import Message, SMTPClient

sys.path.insert(0, str(HERE.parent / "tests"))
from integration.mail import postfix_server

SENDER = "Acme <no-reply@acme.example>"
RECIPIENT = "user@example.org"
SUBJECT = "Reset your password"
POOL_SIZES = (1, 4, 8)
SLOW_POOL_SIZES = (8, 16)


def bodies() -> tuple[str, str]:
    """About 1 KB of text and 1 KB of HTML: a 2 KB message once encoded."""
    line = "Follow this link to reset the password for your account: https://acme.example/r\n"
    text = line * 10
    html = "<p>" + "</p>\n<p>".join(line.strip() for _ in range(9)) + "</p>\n"
    return text, html


TEXT, HTML = bodies()


# ------------------------------------------------------------------ smtp-sink


def smtp_sink() -> str:
    """The smtp-sink binary, installed from Debian's postfix package if need be."""
    found = shutil.which("smtp-sink", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("smtp-sink is missing: as root, apt-get install postfix (see docstring)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    preseed = "postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run(["debconf-set-selections"], input=preseed, text=True, check=True, env=env)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-upgrade", "postfix"], check=True, env=env
    )
    # Postfix is wanted only for its test programs: never leave its daemon running.
    if subprocess.run(["pgrep", "-x", "master"], capture_output=True).returncode == 0:
        subprocess.run(["postfix", "stop"], check=False)
    return "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(*options: str) -> tuple[subprocess.Popen[bytes], int]:
    """smtp-sink on a free port of 127.0.0.1, ready for connections."""
    port = free_port()
    args = [smtp_sink(), *options, "-m", "1024", f"127.0.0.1:{port}", "1024"]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root otherwise
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                stop(process)
                raise SystemExit(f"smtp-sink did not start on port {port}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


# ------------------------------------------------------------------ the cases


def stdlib_message(domain: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


async def aiosmtplib_per_message(port: int, n: int, *, given: bool = False) -> float:
    """Seconds for n messages: EmailMessage + aiosmtplib.send, one connection each."""
    start = time.perf_counter()
    for _ in range(n):
        message = stdlib_message("acme.example" if given else None)
        await aiosmtplib.send(
            message,
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            local_hostname="bench.example" if given else None,
        )
    return time.perf_counter() - start


def smtplib_per_message(port: int, n: int) -> float:
    """Seconds for n messages: EmailMessage + smtplib, one connection each."""
    start = time.perf_counter()
    for _ in range(n):
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(stdlib_message())
    return time.perf_counter() - start


async def ours(
    port: int, n: int, pool_size: int, *, pipelining: bool = True, chunking: bool | None = None
) -> float:
    """Seconds for n messages: Message + SMTPClient(pool_size) with pool_size in flight."""
    left = n

    async def worker(client: SMTPClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            message = Message(to=RECIPIENT, subject=SUBJECT, text=TEXT, html=HTML, type="recovery")
            await client.send(message)

    client = SMTPClient(
        host="127.0.0.1",
        port=port,
        sender=SENDER,
        pool_size=pool_size,
        tls="none",
        local_hostname="bench.example",
        max_messages_per_connection=10_000,
        pipelining=pipelining,
        chunking=chunking,
    )
    async with client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(pool_size)))
        elapsed = time.perf_counter() - start
    assert client.counters.sent == n, client.counters
    return elapsed


def build_cost(n: int = 2000) -> tuple[float, float, int]:
    """Microseconds to build one message as bytes: stdlib vs ours; and our size."""
    from apitask.mail._smtp._mime import parse_sender, render

    start = time.perf_counter()
    for _ in range(n):
        bytes(stdlib_message("acme.example"))
    stdlib_us = (time.perf_counter() - start) / n * 1e6
    sender = parse_sender(SENDER)
    start = time.perf_counter()
    for _ in range(n):
        data = render(Message(to=RECIPIENT, subject=SUBJECT, text=TEXT, html=HTML), sender).data
    ours_us = (time.perf_counter() - start) / n * 1e6
    return stdlib_us, ours_us, len(data)


def smtp_source_rate(port: int, n: int, sessions: int = 32) -> float:
    """Msg/s of Postfix's smtp-source: ``sessions`` reused connections, 2 KB messages."""
    source = smtp_sink().replace("smtp-sink", "smtp-source")
    start = time.perf_counter()
    subprocess.run(
        [source, "-s", str(sessions), "-m", str(n), "-l", "2048", "-d",
         "-f", "no-reply@acme.example", "-t", RECIPIENT, f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return n / (time.perf_counter() - start)


def pipelining(repeat: int, quick: bool) -> tuple[list[Series], dict[str, float]]:
    """Section 3 of the docstring: print it, return its series and its ratios."""
    n_ours, n_source = (1000, 5000) if quick else (4000, 20000)
    limit = Series("(a) smtp-source -s 32 -d (the sink's limit)", "msg/s")
    rows = {
        (size, on): Series(
            f"(a) ours, pool_size={size}, pipelining {'on' if on else 'off'}", "msg/s"
        )
        for size in POOL_SIZES
        for on in (False, True)
    }
    sink, port = start_sink()
    try:
        for _ in range(repeat):  # interleaved rounds: drift hits every case alike
            limit.values.append(smtp_source_rate(port, n_source))
            for (size, on), row in rows.items():
                gc.collect()
                row.values.append(n_ours / asyncio.run(ours(port, n_ours, size, pipelining=on)))
    finally:
        stop(sink)
    print("\n3. ESMTP PIPELINING (issue 19)")
    print(table([limit, *rows.values()], limit, higher_is_better=True))
    best_on = max(rows[size, True].median for size in POOL_SIZES)
    best_off = max(rows[size, False].median for size in POOL_SIZES)
    share = best_on / limit.median
    print(
        f"best of ours / the sink's limit: pipelining on {share:.0%}, off "
        f"{best_off / limit.median:.0%} (target >= 25%)"
    )

    delay = 0.020
    slow = {on: Series(f"(b) +20 ms replies, pool_size=1, pipelining {'on' if on else 'off'}",
                       "msg/s") for on in (False, True)}  # fmt: skip
    ratios: list[float] = []
    sink, sink_port = start_sink()
    port = free_port()
    try:
        with helper_process("_latency_proxy.py", port, sink_port, delay):
            count = 25 if quick else 60
            for _ in range(repeat):
                for on in (False, True):
                    rate = count / asyncio.run(ours(port, count, 1, pipelining=on))
                    slow[on].values.append(rate)
                ratios.append(slow[True].values[-1] / slow[False].values[-1])
    finally:
        stop(sink)
    print(table(list(slow.values()), slow[False], higher_is_better=True))
    print(
        f"pipelining on / off per connection, round by round: median "
        f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}..{max(ratios):.2f}] "
        "(target >= 2x; 4 round trips -> 2)"
    )
    series = [limit, *rows.values(), *slow.values()]
    return series, {"share_of_sink_limit": share, "latency_ratio": statistics.median(ratios)}


MODES = {
    "CHUNKING": (True, True),
    "DATA pipelined": (True, False),
    "pipelining off": (False, False),
}
"""Section 4's clients: (pipelining, chunking)."""


def chunking(repeat: int, quick: bool) -> tuple[list[Series], dict[str, float]]:
    """Section 4 of the docstring: print it, return its series and its ratios."""
    if (why := postfix_server.missing()) is not None:
        raise SystemExit(f"section 4 needs a private Postfix: {why}")
    n_ours, n_source = (500, 2000) if quick else (2000, 8000)
    limit = Series("(a) smtp-source -s 32 -d on Postfix (its limit)", "msg/s")
    cases = [("CHUNKING", size) for size in POOL_SIZES]
    cases += [("DATA pipelined", 8), ("pipelining off", 8)]
    rows = {
        (mode, size): Series(f"(a) ours, pool_size={size}, {mode}", "msg/s") for mode, size in cases
    }
    delay = 0.020
    slow = {mode: Series(f"(b) +20 ms replies, pool_size=1, {mode}", "msg/s") for mode in MODES}
    ratios: dict[str, list[float]] = {
        "CHUNKING / pipelining off": [],
        "CHUNKING / DATA pipelined": [],
    }
    postfix = postfix_server.start()
    proxy_port = free_port()
    try:
        for _ in range(repeat):  # interleaved rounds: drift hits every case alike
            limit.values.append(smtp_source_rate(postfix.port, n_source))
            for (mode, size), row in rows.items():
                pipelining, chunked = MODES[mode]
                gc.collect()
                seconds = asyncio.run(
                    ours(postfix.port, n_ours, size, pipelining=pipelining, chunking=chunked)
                )
                row.values.append(n_ours / seconds)
        with helper_process("_latency_proxy.py", proxy_port, postfix.port, delay):
            count = 25 if quick else 60
            for _ in range(repeat):
                for mode, (pipelining, chunked) in MODES.items():
                    seconds = asyncio.run(
                        ours(proxy_port, count, 1, pipelining=pipelining, chunking=chunked)
                    )
                    slow[mode].values.append(count / seconds)
                on = slow["CHUNKING"].values[-1]
                ratios["CHUNKING / pipelining off"].append(on / slow["pipelining off"].values[-1])
                ratios["CHUNKING / DATA pipelined"].append(on / slow["DATA pipelined"].values[-1])
    finally:
        postfix.stop()
    print("\n4. CHUNKING + PIPELINING against Postfix's smtpd (issue 19, P5)")
    print(table([limit, *rows.values()], limit, higher_is_better=True))
    best = max(rows["CHUNKING", size].median for size in POOL_SIZES)
    share = best / limit.median
    print(f"best of ours with CHUNKING / Postfix's limit: {share:.0%}")
    print(table(list(slow.values()), slow["pipelining off"], higher_is_better=True))
    figures: dict[str, float] = {"chunking_share_of_postfix_limit": share}
    for name, values in ratios.items():
        print(
            f"{name} per connection, round by round: median {statistics.median(values):.2f}x "
            f"[{min(values):.2f}..{max(values):.2f}]"
        )
        figures[name] = statistics.median(values)
    print("target: CHUNKING / pipelining off >= 2x (4 round trips -> 1)")
    return [limit, *rows.values(), *slow.values()], figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer messages, one run")
    parser.add_argument("--only-pipelining", action="store_true", help="section 3 alone (issue 19)")
    parser.add_argument("--only-chunking", action="store_true", help="section 4 alone (issue 19)")
    args = parser.parse_args()
    if args.only_chunking:
        load = os.getloadavg()
        series, figures = chunking(1 if args.quick else args.repeat, args.quick)
        print(f"load average (1/5/15 min) at the start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print(
            f"load average (1/5/15 min) at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
        )
        path = save(
            "smtp-chunking", series, load_before=load, load_after=os.getloadavg(), **figures
        )
        print(f"raw: {path}")
        return
    if args.only_pipelining:
        load = os.getloadavg()
        series, figures = pipelining(1 if args.quick else args.repeat, args.quick)
        print(f"load average (1 min) at the start: {load[0]:.1f}")
        path = save("smtp_pipelining", series, load_before=load, **figures)
        print(f"raw: {path}")
        return
    repeat = 1 if args.quick else args.repeat
    n_base, n_ours = (200, 600) if args.quick else (1000, 4000)

    stdlib_us, ours_us, message_bytes = build_cost()
    print(f"building one message: stdlib EmailMessage {stdlib_us:.0f} us, ours {ours_us:.0f} us")
    print(f"message size: {message_bytes} bytes\n")

    baseline = Series("(a) EmailMessage+aiosmtplib, conn/msg", "msg/s")
    given = Series("(a') same, msgid domain + EHLO name given", "msg/s")
    stdlib = Series("(b) EmailMessage+smtplib, conn/msg", "msg/s")
    pooled = [Series(f"(c) ours, pool_size={size}", "msg/s") for size in POOL_SIZES]
    sink, port = start_sink()
    try:
        for _ in range(repeat):
            gc.collect()
            baseline.values.append(n_base / asyncio.run(aiosmtplib_per_message(port, n_base)))
            gc.collect()
            given.values.append(
                n_base / asyncio.run(aiosmtplib_per_message(port, n_base, given=True))
            )
            gc.collect()
            stdlib.values.append(n_base / smtplib_per_message(port, n_base))
            for row, size in zip(pooled, POOL_SIZES, strict=True):
                gc.collect()
                row.values.append(n_ours / asyncio.run(ours(port, n_ours, size)))
    finally:
        stop(sink)
    rows = [baseline, given, stdlib, *pooled]
    print(f"1. throughput to smtp-sink, {repeat} runs")
    print(table(rows, baseline, higher_is_better=True))

    slow = [Series(f"-w 1, pool_size={size}", "msg/s") for size in SLOW_POOL_SIZES]
    sink, port = start_sink("-w", "1")
    try:
        for row, size in zip(slow, SLOW_POOL_SIZES, strict=True):
            for _ in range(repeat):
                count = size * (2 if args.quick else 4)
                row.values.append(count / asyncio.run(ours(port, count, size)))
    finally:
        stop(sink)
    print("\n2. smtp-sink -w 1 (DATA reply after 1 s): target >= 0.8 x pool_size msg/s")
    for row, size in zip(slow, SLOW_POOL_SIZES, strict=True):
        print(f"{row.name:<44} {row.median:>10.2f} msg/s = {row.median / size:.2f} x N")

    series, figures = pipelining(repeat, args.quick)
    if postfix_server.missing() is None:
        more, chunked = chunking(repeat, args.quick)
        series, figures = series + more, figures | chunked
    else:
        print(f"\n4. CHUNKING skipped: {postfix_server.missing()}")
    ratio = max(row.median for row in pooled) / baseline.median
    path = save(
        "smtp",
        rows + slow + series,
        **figures,
        build_us={"stdlib": stdlib_us, "ours": ours_us},
        message_bytes=message_bytes,
        best_ratio_vs_a=ratio,
    )
    print(f"\nbest (c) / (a) = {ratio:.1f}x (target >= 3x); raw: {path}")


if __name__ == "__main__":
    main()
