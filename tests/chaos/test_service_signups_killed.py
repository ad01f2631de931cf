"""Scenario 4 through the real service: `apitask-auth serve` in outbox mode, SIGKILLed
during the sign-ups, then started again on the same SQLite file.

test_signups_killed.py runs this scenario on a producer of the library's;
here every sign-up is a `POST /signup` to the service (bcrypt, user row,
token, the confirmation mail's job row in the same transaction, audit entry,
commit), 12 at a time, with its in-process outbox worker sending to the
chaos mail server. One address in ten fails after its mail was enqueued: a
trigger the test adds to the database aborts the sign-up's audit entry, the
last write before the commit, so the request answers 500 and its
transaction, job row included, rolls back.

Half-way, once the server holds outbox leases, it is frozen, its leases are
read from the jobs table, and it is SIGKILLed, with sign-up requests in
flight (their clients get no answer). A new `serve` on the same file takes
the rest of the sign-ups, and its worker takes the killed one's jobs over
when their leases (`GOTRUE_OUTBOX_WORKER_LEASE`) expire. Once every job has
succeeded it gets SIGTERM and must exit cleanly.

* Every committed sign-up got its confirmation mail, and a mail went to no
  address without a committed user (rolled back, or cut short by the kill).
* A 200 means committed; a request without an answer either committed (and
  got its mail) or left nothing.
* Duplicates only among the mails the killed server held leases on, at most
  that many.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from acceptance._service import SERVE_DEV, dev_environment, smtp_environment
from acceptance._uvicorn import GRACEFUL_EXIT, free_port, running_process

from ._support import Tally, poll, size

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from acceptance._uvicorn import ServerProcess

    from ._support import MailServer

SIGNUPS = size(400, 5_000)
KILL_AFTER = SIGNUPS // 2  # sign-ups answered 200 before the kill
CONCURRENT = 12
PASSWORD = "chaos-password"
# 5 to 10 sign-ups a second on a 2-core machine (bcrypt, and one SQLite writer
# at a time); the deadlines allow 2.5.
HALF_WAY_TIMEOUT = 30 + SIGNUPS / 5
# The killed server's jobs are taken over this long after the kill, while the
# rest of the sign-ups go on. Short on purpose: under this load the live
# worker's heartbeats and write-backs wait seconds for the SQLite lock, and its
# own expired leases must stay its own (docs/chaos.md, "Found while writing them").
LEASE = "5s"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + SIGNUPS / 2)]

# The failure after the enqueue. It fires only once the sign-up's job row is in
# the transaction: were the mail not enqueued before the audit entry, the
# sign-up would commit, and the test would see a "rollback-" user.
FAIL_AFTER_ENQUEUE = """
CREATE TRIGGER chaos_fail_after_enqueue BEFORE INSERT ON audit_log_entries
WHEN json_extract(NEW.payload, '$.actor_username') LIKE 'rollback-%'
    AND EXISTS (
        SELECT 1 FROM apitask_jobs
        WHERE json_extract(payload, '$.message.to') = json_extract(NEW.payload, '$.actor_username')
    )
BEGIN
    SELECT RAISE(ABORT, 'chaos: the sign-up fails after its mail was enqueued');
END
"""


def address(i: int) -> str:
    """Sign-up ``i``'s address: one in ten is a sign-up that rolls back."""
    return f"rollback-{i}@example.org" if i % 10 == 9 else f"user-{i}@example.org"


def rolls_back(email: str) -> bool:
    return email.startswith("rollback-")


def _query(db: Path, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        return conn.execute(sql, args).fetchall()


async def query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the service's SQLite file from another connection (off the loop)."""
    return await asyncio.to_thread(_query, db, sql, args)


async def count(db: Path, sql: str, *args: object) -> int:
    [(n,)] = await query(db, sql, *args)
    return int(n)


class Answers:
    """What each sign-up request got: a status, or no answer at all (``unknown``)."""

    def __init__(self, ok_before_kill: int) -> None:
        self.status: dict[str, int] = {}
        self.unknown: set[str] = set()
        self.half_way = asyncio.Event()
        self._ok = 0
        self._threshold = ok_before_kill

    def answered(self, email: str, status: int) -> None:
        self.status[email] = status
        self._ok += status == 200
        if self._ok >= self._threshold:
            self.half_way.set()

    def with_status(self, status: int) -> set[str]:
        return {email for email, got in self.status.items() if got == status}


class SignUps:
    """``POST /signup`` for each address of ``todo`` to one server, CONCURRENT at a time.

    :meth:`hold` keeps new requests back (those sent go on), :meth:`resume`
    lets them go again, :meth:`end` stops the loops (the server is gone: a
    request still in flight ends with a transport error, its outcome unknown).
    """

    def __init__(self, todo: Iterator[str], answers: Answers) -> None:
        self.todo = todo
        self.answers = answers
        self._open = asyncio.Event()
        self._open.set()
        self._ended = False

    def hold(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def end(self) -> None:
        self._ended = True
        self._open.set()

    async def run(self, base_url: str) -> None:
        # verify=False: plain http on loopback, and no CA bundle read on the loop.
        # A connection per request: no idle keep-alive connection for uvicorn to close
        # as the client reuses it, so that a request without an answer is one the
        # kill cut short, nothing else.
        async with httpx.AsyncClient(
            base_url=base_url,
            verify=False,
            timeout=120,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            await asyncio.gather(*(self._one_by_one(http) for _ in range(CONCURRENT)))

    async def _one_by_one(self, http: httpx.AsyncClient) -> None:
        while True:
            await self._open.wait()
            email = None if self._ended else next(self.todo, None)
            if email is None:
                return
            try:
                response = await http.post("/signup", json={"email": email, "password": PASSWORD})
            except httpx.TransportError:
                self.answers.unknown.add(email)  # the server died with this request
            else:
                self.answers.answered(email, response.status_code)


HELD = (
    "SELECT json_extract(payload, '$.message.to') FROM apitask_jobs "
    "WHERE state = 'running' AND locked_by LIKE ?"
)


async def freeze_holding_leases(server: ServerProcess, db: Path, signups: SignUps) -> set[str]:
    """Freeze ``server`` (SIGSTOP) at a moment it holds outbox leases; return their recipients.

    A frozen server claims nothing more and writes nothing back, so what is
    read is what it dies with. New sign-ups are held back meanwhile. If its
    leases ended between the look and the freeze, it is thawed, and the next
    moment it holds some is taken.
    """
    mine = f"%:{server.pid}:%"  # a worker's name is host:pid:random
    while True:
        await poll(
            lambda: count(db, f"SELECT count(*) FROM ({HELD})", mine),
            lambda n: n > 0,
            what="the server to hold outbox leases",
            timeout=60,
        )
        signups.hold()
        server.send_signal(signal.SIGSTOP)
        try:
            held = {to for (to,) in await query(db, HELD, mine)}
        except BaseException:
            server.send_signal(signal.SIGKILL)
            raise
        if held:
            return held
        server.send_signal(signal.SIGCONT)
        signups.resume()


async def test_service_sigkill_during_signups_then_restart(
    tmp_path: Path,
    mail_server: Callable[..., Awaitable[MailServer]],
    chaos_report: Callable[[Tally], None],
) -> None:
    """Each committed sign-up has its mail, rolled-back and cut-short ones none;
    duplicates are bounded by the killed server's leases."""
    db = tmp_path / "auth.db"
    smtp = await mail_server("--delay", "0.05")  # a slow provider: sends take a while

    def environment() -> dict[str, str]:
        return dev_environment(free_port()) | {
            "DATABASE_URL": f"sqlite:///{db}",
            "GOTRUE_MAILER_DELIVERY": "outbox",
            "GOTRUE_OUTBOX_WORKER_LEASE": LEASE,
            "GOTRUE_RATE_LIMIT_EMAIL_SENT": "1000000",
            **smtp_environment("127.0.0.1", smtp.port),
        }

    migrate = await asyncio.create_subprocess_exec(
        *SERVE_DEV[:-2], "migrate", env=environment(), cwd=tmp_path
    )
    assert await migrate.wait() == 0
    await query(db, FAIL_AFTER_ENQUEUE)

    todo = map(address, range(SIGNUPS))
    answers = Answers(ok_before_kill=KILL_AFTER)
    clock = asyncio.get_running_loop().time
    started = clock()
    async with running_process(SERVE_DEV, env=environment(), cwd=tmp_path) as first:
        before = SignUps(todo, answers)
        driving = asyncio.create_task(before.run(first.url))
        try:
            async with asyncio.timeout(HALF_WAY_TIMEOUT):
                await answers.half_way.wait()
            in_flight = await freeze_holding_leases(first, db, before)
            killed = await asyncio.to_thread(first.kill)
        finally:
            before.end()
            await driving
    killed_at = clock() - started
    sent_before = len(answers.status) + len(answers.unknown)

    async with running_process(SERVE_DEV, env=environment(), cwd=tmp_path) as second:
        await SignUps(todo, answers).run(second.url)
        await poll(
            lambda: count(db, "SELECT count(*) FROM apitask_jobs WHERE state <> 'succeeded'"),
            lambda n: n == 0,
            what="every job succeeded",
            timeout=120,
        )
        stopped = await asyncio.to_thread(second.stop)
    took = clock() - started

    committed = {email for (email,) in await query(db, "SELECT email FROM users")}
    # A sent job's payload is erased (the outbox keeps no address once the mail is
    # sent): count the rows; the mail server's tally says to whom each went.
    jobs = await count(db, "SELECT count(*) FROM apitask_jobs")
    # Each job succeeded once the server answered 250: its line is printed, maybe not read yet.
    await smtp.wait_for(smtp.reached(committed), timeout=10)
    rolled_back = answers.with_status(500)
    tally = Tally(
        "apitask-auth serve, outbox, sign-ups, SIGKILL, restart",
        sent=committed,
        deliveries=smtp.delivered_to,
        notes={
            "rolled back": len(rolled_back),
            "no answer at the kill": len(answers.unknown),
            "of them committed": len(answers.unknown & committed),
            "killed server's in-flight": len(in_flight),
            "kill at": f"{killed_at:.0f}s",
            "total": f"{took:.0f}s",
        },
    )
    chaos_report(tally)
    assert killed == -signal.SIGKILL
    assert stopped in GRACEFUL_EXIT, second.log
    assert sent_before < SIGNUPS  # sign-ups both before the kill and after it
    assert len(answers.status) + len(answers.unknown) == SIGNUPS
    assert len(answers.unknown) <= CONCURRENT  # only requests in flight at the kill
    # Every answer is a 200, or the 500 of a sign-up that rolls back.
    wrong = {e: got for e, got in answers.status.items() if got != (500 if rolls_back(e) else 200)}
    assert wrong == {}, first.log
    assert rolled_back
    assert not {e for e in committed if rolls_back(e)}  # rolled back after its enqueue
    assert answers.with_status(200) <= committed <= answers.with_status(200) | answers.unknown
    assert jobs == len(committed)  # one job per committed sign-up, none for the others
    assert (tally.lost, tally.unexpected) == (0, set())
    assert tally.duplicated <= len(in_flight)
    assert {rcpt for rcpt, n in tally.deliveries.items() if n > 1} <= in_flight
