"""What the dashboard shows of a payload, ages, the chart and the CSRF tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apitask.dashboard._present import Sample, age, chart, pretty, visible
from apitask.dashboard._security import Csrf
from apitask.outbox import Job, JobFilter, JobState
from apitask.outbox._browse import search_sql

NOW = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)


def job(payload: str, type: str = "mailer.signup") -> Job:
    return Job(1, type, payload, JobState.DEAD, 1, NOW, NOW)


def test_mail_shows_recipient_and_headers_not_the_body() -> None:
    shown = visible(
        job(
            '{"message": {"to": "a@b.example", "html": "code 1", "text": "code 1",'
            ' "headers": {"X-A": "1"}, "subject": "Hi"}}'
        )
    )
    assert shown.fields == (("to", "a@b.example"), ("subject", "Hi"))
    assert shown.headers == (("X-A", "1"),)
    assert shown.hidden == ("html", "text")


@pytest.mark.parametrize(
    ("payload", "type", "hidden"),
    [
        ("not json", "flaky", ("payload",)),
        ("[1, 2]", "flaky", ("payload",)),
        ('{"name": "x", "secret": "y"}', "webhook.send", ("name", "secret")),
        ('{"message": "plain"}', "mailer.signup", ("message",)),
    ],
)
def test_other_payloads_show_only_field_names(
    payload: str, type: str, hidden: tuple[str, ...]
) -> None:
    shown = visible(job(payload, type))
    assert shown.fields == ()
    assert shown.hidden == hidden


def test_mail_headers_not_a_mapping_are_ignored() -> None:
    shown = visible(job('{"message": {"to": "a@b.example", "headers": "junk"}}'))
    assert shown.headers == ()
    assert shown.fields == (("to", "a@b.example"),)


def test_erased_and_pretty() -> None:
    assert visible(job("{}")).erased
    assert pretty("not json") == "not json"
    assert pretty('{"a":1}') == '{\n  "a": 1\n}'


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(3, "3 s"), (240, "4 min"), (7200, "2 h"), (5 * 86400, "5 d"), (-5, "0 s")],
)
def test_age(seconds: float, shown: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), NOW) == shown


def test_age_of_nothing_and_of_now() -> None:
    assert age(None) == "-"
    assert age(datetime.now(UTC)) == "0 s"


def test_chart_scales_to_the_largest_count() -> None:
    assert chart([Sample(0.0, {"dead": 1})]) == []
    lines = chart([Sample(10.0, {"dead": 0}), Sample(20.0, {"dead": 4, "queued": 2})], 100, 40)
    dead = next(line for line in lines if line.state == "dead")
    assert dead.points == "0.0,36.0 100.0,4.0"
    assert dead.last == 4
    flat = chart([Sample(5.0, {}), Sample(5.0, {})], 100, 40)
    assert flat[0].points == "0.0,36.0 0.0,36.0"


def test_csrf_tokens() -> None:
    csrf = Csrf(b"k" * 32)
    cookie = Csrf.new_cookie()
    assert csrf.check(cookie, csrf.field(cookie))
    assert not csrf.check(cookie, Csrf(b"j" * 32).field(cookie))
    assert not csrf.check(None, "x")
    assert not csrf.check(cookie, None)


def test_search_sql_names_only_the_filters_given() -> None:
    sql, params = search_sql("sqlite", JobFilter(), None, 10)
    assert "WHERE TRUE ORDER BY id DESC" in sql
    assert params == {"limit": 10}
    sql, params = search_sql(
        "postgresql", JobFilter(JobState.DEAD, "t", "r", "acme.example"), 99, 5
    )
    assert "state = :state AND type = :type AND request_id = :request_id" in sql
    # PostgreSQL compares the domain cut from the address, whole (so the planner
    # can walk the failures index); SQLite matches the address's end.
    assert "#>> '{message,to}') FROM '@([^@]*)$') END) = :domain" in sql
    assert params["domain"] == "acme.example"
    assert params["before"] == 99
    sql, params = search_sql("sqlite", JobFilter(domain="acme.example"), None, 5)
    assert "json_extract(payload, '$.message.to')) LIKE :domain" in sql
    assert params["domain"] == "%@acme.example"


@pytest.mark.parametrize("domain", ["a%b", "a_b.example", "Acme.example", "-a.example", ""])
def test_job_filter_refuses_a_domain_with_wildcards(domain: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        JobFilter(domain=domain)
