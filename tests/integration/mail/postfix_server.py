"""A private Postfix instance (a real smtpd offering PIPELINING and CHUNKING) for tests and benches.

Postfix's ``smtp-sink`` does not offer CHUNKING (RFC 3030), so the BDAT path
is tried against Postfix's SMTP server itself: ``master -d`` in the
foreground, its configuration, queue and data directories in a temporary
directory, its own ports on 127.0.0.1, and stopped by its PID. It needs
root (master starts as root and drops to the ``postfix`` user) and the
Debian ``postfix`` package (``scripts/install-smtp-sink`` installs it); the
system's Postfix configuration is neither read nor changed.

Mail is accepted and thrown away (the ``discard`` transport), except:

- to ``hold@example.org``: kept in the hold queue, readable with :meth:`Postfix.held`;
- to ``unknown@example.org``: 550 at RCPT; to ``later@example.org``: 450 at RCPT;
- a message larger than :data:`SIZE_LIMIT` (announced with ``SIZE=``): 552 at MAIL;
- a message whose Subject starts with ``reject me``: 550 to its end (BDAT or the dot).

Two SMTP services: ``port`` offers CHUNKING, ``port_no_chunking`` leaves it
out of its EHLO reply (``smtpd_discard_ehlo_keywords``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MASTER = Path("/usr/lib/postfix/sbin/master")
POSTCAT = "/usr/sbin/postcat"

SIZE_LIMIT = 200_000
"""Bytes: Postfix refuses a larger message at MAIL (``message_size_limit``)."""

_QUEUES = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming")
_PRIVATE = (*_QUEUES, "private", "saved", "trace")


def missing() -> str | None:
    """Why a private Postfix cannot run here, or ``None`` when it can."""
    if not MASTER.exists():
        return "Postfix is missing: run scripts/install-smtp-sink"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postfix:
    """One running instance."""

    root: Path
    process: subprocess.Popen[bytes]
    port: int
    port_no_chunking: int

    def held(self) -> list[bytes]:
        """The header and body of each message in the hold queue, as ``postcat`` prints them."""
        hold = self.root / "queue" / "hold"
        return [
            subprocess.run(
                [POSTCAT, "-c", str(self.root / "conf"), "-bh", str(path)],
                check=True,
                capture_output=True,
            ).stdout
            for path in sorted(hold.iterdir())
        ]

    def stop(self) -> None:
        """Stop master (it stops its children) and remove the instance's files."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start(*, hold_all: bool = False) -> Postfix:
    """Configure and start an instance; return once both ports accept connections.

    ``hold_all`` keeps every accepted message in the hold queue (for the test
    that reads them back); otherwise only mail to ``hold@example.org`` is kept.
    """
    root = Path(tempfile.mkdtemp(prefix="apitask-postfix-"))
    os.chmod(root, 0o755)  # the postfix user walks into it
    conf, queue, data = root / "conf", root / "queue", root / "data"
    for directory in (conf, data, *(queue / q for q in (*_PRIVATE, "maildrop", "public", "pid"))):
        directory.mkdir(parents=True)
    for name in _PRIVATE:
        shutil.chown(queue / name, "postfix", "root")
        os.chmod(queue / name, 0o700)
    for name, mode in (("maildrop", 0o730), ("public", 0o710)):
        shutil.chown(queue / name, "postfix", "postdrop")
        os.chmod(queue / name, mode)
    shutil.chown(data, "postfix")
    port, port_no_chunking = _free_port(), _free_port()
    hold = "permit_mynetworks" if not hold_all else "check_client_access inline:{127.0.0.1=HOLD}"
    (conf / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
myhostname = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
default_transport = discard
relay_transport = discard
smtpd_error_sleep_time = 0
message_size_limit = {SIZE_LIMIT}
smtpd_recipient_restrictions =
    check_recipient_access inline:{{{{unknown@example.org = 550 5.1.1 no such user}},
        {{later@example.org = 450 4.2.1 try later}}, {{hold@example.org = HOLD}}}},
    {hold}, permit_mynetworks, reject
smtpd_relay_restrictions = permit_mynetworks, reject
header_checks = regexp:{{{{/^Subject: reject me/ REJECT 5.7.1 content refused}}}}
"""
    )
    services = (Path("/etc/postfix/master.cf.proto")).read_text().splitlines()
    kept = [s for s in services if s and not s.startswith("#") and not re.match(r"smtp\s+inet", s)]
    (conf / "master.cf").write_text(
        "\n".join(
            [
                f"127.0.0.1:{port} inet n - n - - smtpd",
                f"127.0.0.1:{port_no_chunking} inet n - n - - smtpd"
                " -o smtpd_discard_ehlo_keywords=chunking",
                *kept,
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [str(MASTER), "-c", str(conf), "-d"],
        env={**os.environ, "MAIL_CONFIG": str(conf)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    instance = Postfix(root, process, port, port_no_chunking)
    deadline = time.monotonic() + 15
    for ready_port in (port, port_no_chunking):
        while True:
            try:
                socket.create_connection(("127.0.0.1", ready_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    instance.stop()
                    raise RuntimeError(f"Postfix did not start on port {ready_port}") from None
                time.sleep(0.05)
    return instance
