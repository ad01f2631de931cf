"""apitask.contrib.django in a real Django project, in this process, on SQLite and a real
SMTP server: the schema Django's migrate makes, the settings' errors, the mail backend,
the worker and outbox commands, ORM tasks in threads."""

from __future__ import annotations

import email
import email.policy
import re
import sqlite3
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest

from apitask.outbox._sql import load_migrations, load_schema

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from smtp_sink import Sink

    from apitask import JSONValue, Task
    from apitask.outbox import TaskRegistry

VERSIONS = [migration.version for migration in load_migrations("sqlite")]


def describe_sqlite(path: Path, create: bool) -> object:
    """The outbox tables of a SQLite file: columns, indexes, checks."""
    conn = sqlite3.connect(path)
    try:
        if create:
            for statement in load_schema("sqlite"):
                conn.execute(statement)
        tables = ("apitask_jobs", "apitask_job_events")
        columns = [conn.execute(f"PRAGMA table_xinfo({t})").fetchall() for t in tables]
        index_list = [sorted(conn.execute(f"PRAGMA index_list({t})").fetchall()) for t in tables]
        indexes = sorted(
            " ".join(sql.split())
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type='index' "
                "AND tbl_name IN ('apitask_jobs', 'apitask_job_events') AND sql IS NOT NULL"
            )
        )
        (table_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'apitask_jobs'"
        ).fetchone()
        return columns, index_list, indexes, " ".join(table_sql.split()).count("CHECK")
    finally:
        conn.close()


def test_django_migrate_makes_the_declared_sqlite_schema(django_db: Path, tmp_path: Path) -> None:
    migrated = describe_sqlite(django_db, create=False)
    assert migrated == describe_sqlite(tmp_path / "declared.db", create=True)
    assert all(migrated[0])  # type: ignore[index]  # both tables are there


def test_the_outbox_finds_django_migrations_recorded_and_zero_drops_the_tables(
    django_db: Path,
) -> None:
    """Django's migrate records the outbox's own versions: Outbox.migrate() has nothing
    left to apply. ``migrate apitask zero`` drops the tables; ``migrate`` brings them back."""
    import asyncio

    from django.core.management import call_command

    from apitask.outbox import open_outbox

    async def migrate() -> list[int]:
        async with open_outbox(f"sqlite:///{django_db}") as outbox:
            return await outbox.migrate()

    assert asyncio.run(migrate()) == []
    call_command("migrate", "apitask", "zero", verbosity=0)
    tables = {
        row[0] for row in sqlite3.connect(django_db).execute("SELECT name FROM sqlite_master")
    }
    assert not {"apitask_jobs", "apitask_job_events", "apitask_migrations"} & tables
    call_command("migrate", "apitask", verbosity=0)
    assert all(describe_sqlite(django_db, create=False)[0])  # type: ignore[index]


def test_each_django_migration_applies_the_outbox_versions_up_to_its_own(
    django_db: Path,
) -> None:
    """``migrate apitask 0001`` stops at outbox version 3; the later Django
    migrations apply 4 and 5, each recorded in ``apitask_migrations``."""
    from django.core.management import call_command

    def recorded() -> list[int]:
        conn = sqlite3.connect(django_db)
        try:
            return [
                row[0] for row in conn.execute("SELECT version FROM apitask_migrations ORDER BY 1")
            ]
        finally:
            conn.close()

    call_command("migrate", "apitask", "zero", verbosity=0)
    try:
        call_command("migrate", "apitask", "0001", verbosity=0)
        assert recorded() == [1, 2, 3]
        call_command("migrate", "apitask", "0002", verbosity=0)
        assert recorded() == [1, 2, 3, 4]
    finally:
        call_command("migrate", "apitask", verbosity=0)
    assert recorded() == VERSIONS


# -- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "APITASK must be a dict, got list"),
        ({"DATABSE": "x"}, "unknown key(s) 'DATABSE'; known: DATABASE, EMAIL_BACKEND"),
        ({"DATABASE": "replica"}, "APITASK['DATABASE'] is 'replica', which is not in DATABASES"),
        ({"DATABASE": ""}, "APITASK['DATABASE'] must be a non-empty string, got ''"),
        ({"REGISTRY": 3}, "APITASK['REGISTRY'] must be a non-empty string, got 3"),
        (
            {"EMAIL_BACKEND": "apitask.contrib.django.EmailBackend"},
            "the worker would queue each mail again",
        ),
        ({"THREADS": 0}, "APITASK['THREADS'] must be an integer >= 1, got 0"),
        ({"THREADS": True}, "APITASK['THREADS'] must be an integer >= 1, got True"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(
    django_db: Path, config: object, message: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from apitask.contrib.django._settings import load_settings

    with override_settings(APITASK=config), pytest.raises(ImproperlyConfigured) as caught:
        load_settings()
    assert message in str(caught.value)


def test_the_app_checks_the_settings_at_start(django_db: Path) -> None:
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    with override_settings(APITASK={"THREADS": -1}), pytest.raises(ImproperlyConfigured):
        apps.get_app_config("apitask").ready()


def test_a_registry_that_cannot_load_is_named(django_db: Path) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from apitask.contrib.django import get_registry

    with (
        override_settings(APITASK={"REGISTRY": "djsite.nowhere:registry"}),
        pytest.raises(ImproperlyConfigured, match=r"APITASK\['REGISTRY'\]: cannot load"),
    ):
        get_registry()


def own_mail_factory(type: str, payload: Mapping[str, JSONValue]) -> Task:  # pragma: no cover
    raise AssertionError("only compared, never called")


def own_mail_registry() -> TaskRegistry:
    """A project registry that handles django.mail itself."""
    from apitask.outbox import TaskRegistry

    registry = TaskRegistry()
    registry.register("django.mail", own_mail_factory)
    return registry


def test_the_project_registry_keeps_its_own_mail_factory(django_db: Path) -> None:
    """A registry that already handles django.mail keeps its factory; the project's
    and the default one get the backend's."""
    from django.test import override_settings

    from apitask.contrib.django import get_registry
    from apitask.contrib.django._mail import MAIL_TYPE, MailJob

    assert get_registry().factory_for(MAIL_TYPE) == MailJob.from_payload
    with override_settings(APITASK={}):
        assert get_registry().factory_for(MAIL_TYPE) == MailJob.from_payload
        assert get_registry().factory_for("signups.welcome") is None
    with override_settings(APITASK={"REGISTRY": f"{__name__}:own_mail_registry"}):
        assert get_registry().factory_for(MAIL_TYPE) is own_mail_factory


def test_the_lazy_package_names_only_its_exports() -> None:
    import apitask.contrib.django as contrib

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        contrib.Nope  # noqa: B018


@pytest.mark.parametrize(
    ("database", "url"),
    [
        (
            {"NAME": "app", "USER": "u", "PASSWORD": "p@ss", "HOST": "db", "PORT": 5433},
            "postgresql://u:p%40ss@db:5433/app",
        ),
        ({"NAME": "app", "USER": "u", "HOST": "db"}, "postgresql://u@db/app"),
        ({"NAME": "app"}, "postgresql:///app"),
        (
            {"NAME": "app", "USER": "u", "HOST": "/run/postgresql"},
            "postgresql://u@/app?host=%2Frun%2Fpostgresql",
        ),
        (
            {"NAME": "app", "HOST": "/tmp", "PORT": "5433"},
            "postgresql:///app?host=%2Ftmp&port=5433",
        ),
    ],
)
def test_postgres_settings_become_an_outbox_url(
    django_db: Path, database: dict[str, object], url: str
) -> None:
    from apitask.contrib.django._database import url_for

    assert url_for("pg", "postgresql", database) == url


@pytest.mark.parametrize(
    ("vendor", "name", "message"),
    [
        ("sqlite", ":memory:", "'NAME'] is ':memory:': the outbox needs a SQLite file"),
        ("sqlite", "", "needs a SQLite file"),
        ("mysql", "app", r"DATABASES\['x'\] is mysql; the apitask outbox runs on SQLite or"),
    ],
)
def test_databases_the_outbox_cannot_use_are_refused(
    django_db: Path, vendor: str, name: str, message: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from apitask.contrib.django._database import url_for

    with pytest.raises(ImproperlyConfigured, match=message):
        url_for("x", vendor, {"NAME": name})


# -- the mail job and the worker ---------------------------------------------------


def rich_message(**headers: str) -> object:
    """A message with cc, bcc, an HTML alternative, a binary and a text attachment."""
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives(
        "Relevé de compte",
        "Plain body, with a long line " + "x" * 900,
        "Bank <bank@djsite.test>",
        ["ann@example.test"],
        cc=["Bob <bob@example.test>"],
        bcc=["audit@example.test"],
        headers=headers,
    )
    message.attach_alternative("<p>HTML <b>body</b> é</p>", "text/html")
    message.attach("data.bin", bytes(range(256)) * 8, "application/octet-stream")
    message.attach("note.txt", "héllo\r\nworld\n", "text/plain")
    return message


def queue_directly(job: object) -> None:
    """Queue a job in a transaction of the outbox's own (no Django connection involved)."""
    from apitask.contrib.django import get_outbox

    get_outbox().sink.submit_sync(job)


def run_worker(*args: str) -> str:
    from django.core.management import call_command

    out = StringIO()
    call_command("apitask_worker", "--until-empty", "--poll-interval", "0.05", *args, stdout=out)
    return out.getvalue()


def unbounded(data: bytes) -> bytes:
    return re.sub(rb"={15}\d+==", b"BOUNDARY", bytes(data))


def parts(data: bytes) -> dict[str, bytes]:
    """Each leaf MIME part's decoded bytes, by filename or content type."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    found: dict[str, bytes] = {}
    for part in parsed.walk():
        if not part.is_multipart():
            key = part.get_filename() or part.get_content_type()
            found[key] = bytes(part.get_payload(decode=True))
    return found


def test_the_worker_delivers_the_frozen_bytes_to_every_recipient(
    django_db: Path, sink: Sink
) -> None:
    """What Django rendered at enqueue reaches the SMTP server unchanged: byte for byte
    what Django's SMTP backend sends inline for the same message (alternatives,
    attachments, Message-ID); the envelope has to, cc and bcc."""
    from django.core.mail import get_connection
    from django.test import override_settings

    from apitask.contrib.django._mail import freeze

    fixed = {"Message-ID": "<m1@djsite.test>", "Date": "Sat, 05 Dec 2026 00:00:00 -0000"}
    job = freeze(rich_message(**fixed))
    assert job is not None
    queue_directly(job)
    with override_settings(EMAIL_PORT=sink.port):
        run_worker("--concurrency", "2")
        inline = get_connection("django.core.mail.backends.smtp.EmailBackend")
        inline.send_messages([rich_message(**fixed)])
    assert sink.wait_for(2)
    queued, direct = sink.handler.envelopes
    # Only the random multipart boundaries differ between two renderings.
    assert unbounded(queued.original_content) == unbounded(direct.original_content)
    assert bytes(queued.original_content).rstrip() == job.data.rstrip()
    assert queued.rcpt_tos == ["ann@example.test", "bob@example.test", "audit@example.test"]
    assert queued.rcpt_tos == direct.rcpt_tos and queued.mail_from == "bank@djsite.test"
    received = parts(bytes(queued.original_content))
    assert received["data.bin"] == bytes(range(256)) * 8
    assert received["text/html"] == "<p>HTML <b>body</b> é</p>".encode()
    parsed = email.message_from_bytes(bytes(queued.original_content), policy=email.policy.default)
    assert parsed["Message-ID"] == job.message_id == "<m1@djsite.test>"
    assert parsed["Subject"] == "Relevé de compte"
    assert "Bcc" not in parsed


def test_a_message_without_recipients_is_not_queued(django_db: Path) -> None:
    from django.core.mail import EmailMessage

    from apitask.contrib.django._mail import freeze

    assert freeze(EmailMessage("s", "b", "a@djsite.test", [])) is None


def test_the_payload_round_trips_and_bad_payloads_are_refused(django_db: Path) -> None:
    from apitask.contrib.django._mail import MAIL_TYPE, MailJob, freeze

    job = freeze(rich_message(**{"Message-ID": "<fixed@djsite.test>"}))
    assert job is not None and job.message_id == "<fixed@djsite.test>"
    again = MailJob.from_payload(MAIL_TYPE, job.payload())
    assert (again.sender, again.recipients, again.data, again.message_id) == (
        job.sender,
        job.recipients,
        job.data,
        job.message_id,
    )
    assert "<fixed@djsite.test>" in repr(again)
    good: dict[str, Any] = dict(job.payload())
    for bad in ({**good, "to": []}, {**good, "to": [3]}, {**good, "from": None}):
        with pytest.raises(ValueError, match="expected from, to"):
            MailJob.from_payload(MAIL_TYPE, bad)
    with pytest.raises(ValueError, match="mime is not base64"):
        MailJob.from_payload(MAIL_TYPE, {**good, "mime": "not base64!"})


def _close_kept_connection() -> None:
    from apitask.contrib.django._mail import _local

    _local.backend.connection.close()


def test_send_failures_are_told_apart_and_a_kept_connection_is_renewed(
    django_db: Path, sink: Sink
) -> None:
    """4xx and a refused connection are transient; 5xx (at DATA or for every
    recipient) is final; a kept connection the server closed is reopened at once;
    every attempt carries the same bytes, so the same Message-ID."""
    import asyncio

    from django.core.mail import EmailMessage
    from django.test import override_settings

    from apitask import TransientError
    from apitask.contrib.django import in_thread
    from apitask.contrib.django._mail import MailRefusedError, freeze
    from apitask.contrib.django._threads import start_threads

    start_threads(1)  # one thread: the kept connection is the one closed below
    job = freeze(EmailMessage("s", "b", "a@djsite.test", ["to@example.test"]))
    assert job is not None
    with override_settings(EMAIL_PORT=sink.port):
        sink.fail_next("451 4.3.0 try later")
        with pytest.raises(TransientError, match="SMTP 451"):
            asyncio.run(job.run())
        sink.fail_next("554 5.6.0 no")
        with pytest.raises(MailRefusedError, match="SMTP 554"):
            asyncio.run(job.run())
        asyncio.run(job.run())
        asyncio.run(in_thread(_close_kept_connection))
        asyncio.run(job.run())  # reopened, not failed
        sink.handler.refuse["to@example.test"] = "550 5.1.1 no such user"
        with pytest.raises(MailRefusedError, match="every recipient refused"):
            asyncio.run(job.run())
        sink.handler.refuse["to@example.test"] = "450 4.2.0 mailbox busy"
        with pytest.raises(TransientError, match="every recipient refused"):
            asyncio.run(job.run())
        del sink.handler.refuse["to@example.test"]
        asyncio.run(job.run())
        asyncio.run(in_thread(_close_kept_connection))
        sink.fail_next("421 4.3.2 closing")  # the reopened connection fails too
        with pytest.raises(TransientError, match="SMTP 421"):
            asyncio.run(job.run())
    assert len(sink.messages) == 3
    assert len({m.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in sink.messages}) == 1
    with override_settings(EMAIL_PORT=1), pytest.raises(TransientError, match="sending failed"):
        asyncio.run(job.run())  # nothing listens on port 1


def test_send_errors_keep_no_address(django_db: Path, sink: Sink) -> None:
    """A reply that echoes an address, and an address Django's sanitize_address cannot
    write (found by the worker: the backend stores addresses as given), become errors
    (the job's last_error, the worker's log line) without the local parts."""
    import asyncio

    from django.core.mail import EmailMessage
    from django.test import override_settings

    from apitask import TransientError
    from apitask.contrib.django._mail import MailRefusedError, freeze
    from apitask.contrib.django._threads import shutdown_threads

    job = freeze(EmailMessage("s", "b", "a@djsite.test", ["to@example.test"]))
    two_in_one = freeze(EmailMessage("s", "b", "a@djsite.test", ["ann@example.test, bo@x.test"]))
    assert job is not None and two_in_one is not None
    with override_settings(EMAIL_PORT=sink.port):
        sink.fail_next("550 5.1.1 <to@example.test>: Recipient address rejected")
        with pytest.raises(MailRefusedError) as refused:
            asyncio.run(job.run())
        sink.fail_next("452 4.2.2 to@example.test: mailbox full")
        with pytest.raises(TransientError) as deferred:
            asyncio.run(job.run())
        with pytest.raises(MailRefusedError, match=r"^invalid: Invalid address") as invalid:
            asyncio.run(two_in_one.run())
        shutdown_threads()  # QUIT the connection kept after the refused address
    assert str(refused.value) == "SMTP 550: 5.1.1 <***@example.test>: Recipient address rejected"
    assert str(deferred.value) == "SMTP 452: 4.2.2 ***@example.test: mailbox full"
    assert "ann@" not in str(invalid.value) and "bo@" not in str(invalid.value)
    assert refused.value.__cause__ is None and invalid.value.__suppress_context__
    assert not sink.messages


# -- the backend: send_mail in the caller's transaction ------------------------------


def queued_mail() -> list[tuple[str, str]]:
    """(subject, recipients) of each queued django.mail job, oldest first."""
    import base64
    import json

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT payload FROM apitask_jobs WHERE type = 'django.mail' ORDER BY id")
        payloads = [json.loads(row[0]) for row in cursor.fetchall()]
    found = []
    for payload in payloads:
        parsed = email.message_from_bytes(
            base64.b64decode(payload["mime"]), policy=email.policy.default
        )
        found.append((str(parsed["Subject"]), ",".join(payload["to"])))
    return found


def test_send_mail_joins_the_atomic_block_or_commits_alone(django_db: Path) -> None:
    """Committed atomic: queued. Rolled back: not. Autocommit: queued at once. Every
    Django way in: send_mail, EmailMessage.send(), send_mass_mail, mail_admins."""
    from django.core.mail import EmailMessage, mail_admins, send_mail, send_mass_mail
    from django.db import transaction
    from djsite.signups.models import Signup

    with transaction.atomic():
        Signup.objects.create(email="kept@example.test")
        assert send_mail("kept", "b", None, ["kept@example.test"]) == 1
    with transaction.atomic():
        Signup.objects.create(email="gone@example.test")
        send_mail("gone", "b", None, ["gone@example.test"])
        assert queued_mail()[-1] == ("gone", "gone@example.test")  # seen inside
        transaction.set_rollback(True)
    assert EmailMessage("alone", "b", None, ["alone@example.test"]).send() == 1
    assert EmailMessage("nobody", "b", None, []).send() == 0
    messages = [
        ("mass 1", "b", None, ["m1@example.test"]),
        ("mass 2", "b", None, ["m2@example.test"]),
    ]
    assert send_mass_mail(messages) == 2
    mail_admins("disk full", "b")
    assert queued_mail() == [
        ("kept", "kept@example.test"),
        ("alone", "alone@example.test"),
        ("mass 1", "m1@example.test"),
        ("mass 2", "m2@example.test"),
        ("[Django] disk full", "ops@djsite.test"),
    ]
    assert list(Signup.objects.values_list("email", flat=True)) == ["kept@example.test"]


def test_a_failed_enqueue_raises_unless_fail_silently(django_db: Path) -> None:
    from django.core.mail import get_connection, send_mail
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE apitask_jobs RENAME TO apitask_jobs_away")
    try:
        with pytest.raises(DatabaseError, match="apitask_jobs"):
            send_mail("s", "b", None, ["x@example.test"])
        assert send_mail("s", "b", None, ["x@example.test"], fail_silently=True) == 0
        assert get_connection().send_messages([]) == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE apitask_jobs_away RENAME TO apitask_jobs")


# -- the management commands and ORM tasks ------------------------------------------


def outbox_command(*args: str) -> str:
    from django.core.management import call_command

    out = StringIO()
    call_command("apitask_outbox", *args, stdout=out)
    return out.getvalue()


def test_the_outbox_command_lists_counts_retries_and_purges(django_db: Path, sink: Sink) -> None:
    """A mail refused for good is dead; ``retry`` queues it again and the worker sends
    it; ``purge`` deletes the succeeded jobs; ``stats`` and ``list`` show each step."""
    from django.core.mail import send_mail
    from django.test import override_settings

    send_mail("s", "b", None, ["refused@example.test"])
    sink.handler.refuse["refused@example.test"] = "550 5.1.1 no such user"
    with override_settings(EMAIL_PORT=sink.port):
        run_worker()
        listing = outbox_command("list", "--state", "dead")
        assert "django.mail" in listing and "every recipient refused" in listing
        assert outbox_command("stats").splitlines()[1].split() == [
            "django.mail",
            "0",
            "0",
            "0",
            "0",
            "1",
            "1",
        ]
        del sink.handler.refuse["refused@example.test"]
        assert outbox_command("retry", "--all") == "queued 1 dead job(s) again\n"
        run_worker("--retention", "1h")
    assert len(sink.messages) == 1
    assert outbox_command("purge") == "purged 1 succeeded job(s)\n"
    assert outbox_command("list") == (
        "ID  TYPE  STATE  ATTEMPTS  RUN AT  CREATED  REQUEST  LAST ERROR\n"
    )


def test_the_commands_name_what_to_do(django_db: Path, tmp_path: Path) -> None:
    """migrate belongs to Django here; an unreachable database and a schema behind
    are errors naming the fix; a bad worker option stops the worker with an error."""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"run `manage\.py migrate`"):
        outbox_command("migrate")
    nowhere = f"sqlite:///{tmp_path}/no/such/dir.db"
    with pytest.raises(CommandError, match="the outbox command failed"):
        outbox_command("stats", "--url", nowhere)
    with pytest.raises(CommandError, match="unable to open"):
        run_worker("--url", nowhere)
    empty = f"sqlite:///{tmp_path}/empty.db"
    behind = re.escape(f"lack migrations {VERSIONS}: run `manage.py migrate")
    with pytest.raises(CommandError, match=behind):
        run_worker("--url", empty, "--no-migrate")
    run_worker("--url", empty)  # the worker may migrate it itself
    with pytest.raises(CommandError, match="the worker stopped on an error"):
        run_worker("--batch-size", "0")


def test_an_orm_task_runs_in_a_thread_of_its_own(django_db: Path) -> None:
    """The project's task marks the row through the ORM; the worker's event loop thread
    never opens a Django connection (close_old_connections runs in the task's thread)."""
    import threading

    from django.db import transaction
    from djsite.signups.models import Signup
    from djsite.tasks import Welcome

    from apitask.contrib.django import get_outbox

    with transaction.atomic():
        Signup.objects.create(email="w@example.test")
        get_outbox().enqueue_sync(transaction.get_connection(), Welcome("w@example.test"))
    seen: list[str] = []
    original = Welcome.run

    async def spy(self: Welcome) -> None:
        from apitask.contrib.django import in_thread

        seen.append(await in_thread(lambda: threading.current_thread().name))
        await original(self)

    Welcome.run = spy
    try:
        run_worker()
    finally:
        Welcome.run = original
    assert Signup.objects.get(email="w@example.test").welcomed
    assert seen and seen[0].startswith("apitask-django")


def test_django_migrate_gives_the_tables_to_the_apitask_database_only(django_db: Path) -> None:
    """The other alias gets no outbox tables (and unmigrating it drops none); the
    outbox's migrations, run again on its own database, find nothing to do."""
    from django.core.management import call_command
    from django.db import connection

    from apitask.contrib.django._schema import apply_outbox_migrations

    call_command("migrate", database="other", verbosity=0)
    call_command("migrate", "apitask", "zero", database="other", verbosity=0)
    other = sqlite3.connect(f"{django_db}.other")
    assert not [
        row for row in other.execute("SELECT name FROM sqlite_master") if "apitask_" in row[0]
    ]
    other.close()
    assert all(describe_sqlite(django_db, create=False)[0])  # type: ignore[index]
    assert apply_outbox_migrations(connection, upto=VERSIONS[-1]) == []


def test_other_backends_get_the_frozen_message(django_db: Path) -> None:
    """Through locmem (tests) and console: the frozen bytes, subject readable."""
    from django.core import mail
    from django.core.mail import send_mail
    from django.test import override_settings

    send_mail("Hi there", "body é", None, ["x@example.test"])
    send_mail("Again", "body", None, ["y@example.test"])
    with override_settings(
        APITASK={"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    ):
        mail.outbox = []
        run_worker("--concurrency", "1")
        assert sorted(m.subject for m in mail.outbox) == ["Again", "Hi there"]
        rendered = mail.outbox[0].message()
        assert rendered is mail.outbox[0].message()  # the stored bytes, not rendered again
        assert rendered["To"] in ("x@example.test", "y@example.test")
        parsed = vars(rendered)["_parsed"]
        assert rendered["Subject"] and vars(rendered)["_parsed"] is parsed  # parsed once
    send_mail("On the console", "body", None, ["z@example.test"])
    console = StringIO()
    with override_settings(
        APITASK={"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    ):
        import sys

        stdout, sys.stdout = sys.stdout, console
        try:
            run_worker("--concurrency", "1")
        finally:
            sys.stdout = stdout
    assert "Subject: On the console" in console.getvalue()


def test_a_dropped_fresh_connection_is_transient_and_no_recipient_queues_nothing(
    django_db: Path, sink: Sink
) -> None:
    import asyncio

    from django.core.mail import EmailMessage, get_connection
    from django.test import override_settings

    from apitask import TransientError
    from apitask.contrib.django._mail import freeze

    job = freeze(EmailMessage("s", "b", "a@djsite.test", ["to@example.test"]))
    assert job is not None
    with override_settings(EMAIL_PORT=sink.port):
        sink.fail_next("DROP")
        with pytest.raises(TransientError, match="closed the connection"):
            asyncio.run(job.run())
    assert get_connection().send_messages([EmailMessage("s", "b", None, [])]) == 0
