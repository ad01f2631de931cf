"""The dashboard over a real outbox, through httpx's ASGI transport, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from apitask import dashboard
from apitask.outbox import JobState, Outbox, open_store

from .conftest import Flaky, Mail, csrf_token, form, run_jobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from starlette.applications import Starlette
    from starlette.requests import Request

    from apitask.outbox import StateCounts


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash.test")


def admin(request: Request) -> str | None:
    return "ops@example.test" if request.headers.get("x-admin") == "yes" else None


@pytest.fixture
async def client(outbox: Outbox) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(dashboard.app(outbox, auth=admin)) as client:
        client.headers["x-admin"] = "yes"
        yield client


async def dead_flaky(outbox: Outbox, *names: str) -> list[int]:
    ids = [await outbox.enqueue(None, Flaky(name)) for name in names]
    await run_jobs(outbox)
    return [i for i in ids if i is not None]


# -- who gets in -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/api/summary"), ("GET", "/jobs/1"), ("POST", "/purge")],
)
async def test_no_auth_refuses_everyone(outbox: Outbox, method: str, path: str) -> None:
    """With neither auth nor allow_anonymous, every page and action is refused."""
    async with client_for(dashboard.app(outbox)) as client:
        response = await client.request(method, path)
    assert response.status_code == 403
    assert "not allowed" in response.text


async def test_auth_none_refuses_and_anonymous_opt_in(outbox: Outbox) -> None:
    async with client_for(dashboard.app(outbox, auth=admin)) as client:
        assert (await client.get("/")).status_code == 403
        ok = await client.get("/", headers={"x-admin": "yes"})
    assert ok.status_code == 200
    assert "signed in as ops@example.test" in ok.text
    async with client_for(dashboard.app(outbox, allow_anonymous=True)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert "signed in as anonymous" in page.text


async def test_async_auth(outbox: Outbox) -> None:
    async def auth(request: Request) -> str | None:
        return "async-admin"

    async with client_for(dashboard.app(outbox, auth=auth)) as client:
        assert "signed in as async-admin" in (await client.get("/")).text


def test_bad_arguments(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="allow_anonymous"):
        dashboard.app(outbox, auth=admin, allow_anonymous=True)
    with pytest.raises(ValueError, match="csrf_key"):
        dashboard.app(outbox, allow_anonymous=True, csrf_key=b"short")
    with pytest.raises(ValueError, match="refresh"):
        dashboard.app(outbox, allow_anonymous=True, refresh=-1)
    with pytest.raises(ValueError, match="lease"):
        dashboard.app(outbox, allow_anonymous=True, lease=0)


# -- reading -----------------------------------------------------------------------


async def test_counts_filters_and_keyset_pages(outbox: Outbox, client: httpx.AsyncClient) -> None:
    dead = await dead_flaky(outbox, "a", "b")
    for n in range(60):
        await outbox.enqueue(None, Flaky(f"q{n}"), delay=3600)
    page = await client.get("/")
    assert page.status_code == 200
    assert 'data-total="dead">2<' in page.text
    assert 'data-total="queued">60<' in page.text
    # 62 jobs, 50 a page: the first page links to the older ones, which start below it.
    assert 'rel="next"' in page.text
    newest = max(dead) + 60
    assert f'href="/jobs/{newest}"' in page.text
    second = await client.get(f"/?before={newest - 49}")
    assert f'href="/jobs/{newest - 50}"' in second.text
    assert f'href="/jobs/{newest}"' not in second.text
    assert 'rel="next"' not in second.text
    only_dead = await client.get("/?state=dead")
    assert only_dead.text.count("flaky a is broken") == 1
    assert only_dead.text.count("flaky b is broken") == 1
    assert f'href="/jobs/{newest}"' not in only_dead.text
    none = await client.get("/?type=nothing")
    assert "No job matches." in none.text


async def test_search_by_request_id_and_recipient_domain(
    outbox: Outbox, client: httpx.AsyncClient
) -> None:
    from apitask._request_id import task_request_id

    token = task_request_id.set("req-42")
    by_request = await outbox.enqueue(None, Flaky("traced"))
    task_request_id.reset(token)
    to_acme = await outbox.enqueue(None, Mail("Ann@Acme.example"))
    to_other = await outbox.enqueue(None, Mail("bob@other.example"))
    page = await client.get("/?request_id=req-42")
    assert f'href="/jobs/{by_request}"' in page.text
    assert f'href="/jobs/{to_acme}"' not in page.text
    page = await client.get("/?domain=ACME.example")
    assert f'href="/jobs/{to_acme}"' in page.text
    assert f'href="/jobs/{to_other}"' not in page.text


@pytest.mark.parametrize(
    "query",
    ["state=bogus", "domain=a%25b", "before=x", "type=" + "t" * 201, "request_id=%01"],
)
async def test_bad_filters_are_a_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/?{query}")
    assert response.status_code == 400


async def test_job_page_hides_the_mail_body(outbox: Outbox, client: httpx.AsyncClient) -> None:
    job_id = await outbox.enqueue(None, Mail("ann@acme.example", code="739164"))
    await run_jobs(outbox)
    page = await client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "ann@acme.example" in page.text
    assert "X-Mail-Type" in page.text
    assert "the relay refused the mail" in page.text
    assert "739164" not in page.text
    assert "Hidden: html, text." in page.text
    assert (await client.get("/jobs/999999")).status_code == 404
    assert (await client.get("/jobs/abc")).status_code == 400


async def test_reveal_needs_a_post_with_the_token_and_is_logged(
    outbox: Outbox, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await outbox.enqueue(None, Mail("ann@acme.example", code="739164"))
    token = await csrf_token(client, f"/jobs/{job_id}")
    forged = await client.post(f"/jobs/{job_id}/reveal", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    assert "739164" not in forged.text
    with caplog.at_level(logging.INFO, logger="apitask.dashboard"):
        missing = await client.post("/jobs/424242/reveal", data={"csrf": token})
        malformed = await client.post("/jobs/4%0Ax/reveal", data={"csrf": token})
        assert (missing.status_code, malformed.status_code) == (404, 400)
        assert "revealed" not in caplog.text  # nothing was
        shown = await client.post(f"/jobs/{job_id}/reveal", data={"csrf": token})
    assert shown.status_code == 200
    assert "Your code is 739164" in shown.text
    assert f"ops@example.test revealed the payload of job {job_id}" in caplog.text


async def test_succeeded_payload_is_erased(outbox: Outbox, client: httpx.AsyncClient) -> None:
    Flaky.broken = False
    job_id = await outbox.enqueue(None, Flaky("fine"))
    worker = outbox.worker(listen=False, retention=3600)
    await worker.run(until_empty=True)
    page = await client.get(f"/jobs/{job_id}")
    assert "Erased when the job succeeded." in page.text


# -- actions -----------------------------------------------------------------------


async def test_retry_a_dead_job_and_it_succeeds(
    outbox: Outbox, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = await dead_flaky(outbox, "retry-me")
    token = await csrf_token(client, f"/jobs/{job_id}")
    unconfirmed = await client.post(f"/jobs/{job_id}/retry", data={"csrf": token})
    assert unconfirmed.status_code == 400
    no_token = await client.post(f"/jobs/{job_id}/retry", data={"confirm": "yes"})
    assert no_token.status_code == 403
    with caplog.at_level(logging.INFO, logger="apitask.dashboard"):
        done = await client.post(f"/jobs/{job_id}/retry", data=form(token))
    assert done.status_code == 303
    assert f"ops@example.test retried dead job {job_id}" in caplog.text
    Flaky.broken = False
    await run_jobs(outbox)
    assert Flaky.ran == ["retry-me"]
    page = await client.get(done.headers["location"])
    assert "1 job retried" in page.text
    crafted = await client.get(f"/jobs/{job_id}?done=Session+expired:+sign+in+at+evil.example")
    assert "evil.example" not in crafted.text


async def test_retry_all_matching_and_purge(outbox: Outbox, client: httpx.AsyncClient) -> None:
    await dead_flaky(outbox, "a", "b")
    mail = await outbox.enqueue(None, Mail("ann@acme.example"))
    await run_jobs(outbox)
    token = await csrf_token(client)
    done = await client.post("/retry", data=form(token, type="flaky"))
    assert "2+dead" in done.headers["location"]
    stats = await outbox.stats()
    assert stats.counts["flaky"] == {JobState.QUEUED: 2}
    assert stats.counts["mailer.signup"] == {JobState.DEAD: 1}
    purged = await client.post("/purge", data=form(token, state="dead", older_than="0"))
    assert purged.status_code == 303
    assert await outbox.store.job(mail) is None  # type: ignore[attr-defined]
    refused = await client.post("/purge", data=form(token, state="queued"))
    assert refused.status_code == 400
    assert (await outbox.stats()).total(JobState.QUEUED) == 2


async def test_retry_matching_pages_and_limit(
    outbox: Outbox, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching dead jobs are collected page by page, up to the limit; none matching: none."""
    from apitask.dashboard import _app

    await dead_flaky(outbox, "a", "b", "c", "d", "e")
    monkeypatch.setattr(_app, "RETRY_PAGE", 2)
    monkeypatch.setattr(_app, "RETRY_LIMIT", 3)
    token = await csrf_token(client)
    nothing = await client.post("/retry", data=form(token, type="nothing"))
    assert "0+dead" in nothing.headers["location"]
    await client.post("/retry", data=form(token, type="flaky"))
    assert (await outbox.stats()).counts["flaky"] == {JobState.QUEUED: 3, JobState.DEAD: 2}
    await client.post("/retry", data=form(token))
    assert (await outbox.stats()).counts["flaky"] == {JobState.QUEUED: 5}


async def test_actions_on_a_missing_job(client: httpx.AsyncClient) -> None:
    token = await csrf_token(client)
    for action in ("retry", "cancel"):
        response = await client.post(f"/jobs/424242/{action}", data=form(token))
        assert response.status_code == 400
        assert "no such job" in response.text


async def test_cancel_a_pending_job(outbox: Outbox, client: httpx.AsyncClient) -> None:
    job_id = await outbox.enqueue(None, Flaky("later"), delay=3600)
    token = await csrf_token(client, f"/jobs/{job_id}")
    done = await client.post(f"/jobs/{job_id}/cancel", data=form(token))
    assert done.status_code == 303
    job = await outbox.store.job(job_id)  # type: ignore[attr-defined]
    assert job.state is JobState.DEAD
    assert job.last_error == "cancelled by ops@example.test on the dashboard"
    again = await client.post(f"/jobs/{job_id}/cancel", data=form(token))
    assert "0+job" in again.headers["location"]


async def test_read_only_refuses_actions(outbox: Outbox) -> None:
    [job_id] = await dead_flaky(outbox, "stays")
    app = dashboard.app(outbox, allow_anonymous=True, read_only=True)
    async with client_for(app) as client:
        page = await client.get(f"/jobs/{job_id}")
        assert "read-only" in page.text
        assert '<form method="post"' not in page.text
        token = "0" * 64
        refused = await client.post(f"/jobs/{job_id}/retry", data=form(token))
        reveal = await client.post(f"/jobs/{job_id}/reveal", data=form(token))
    assert refused.status_code == 403
    assert reveal.status_code == 403
    assert '"name": "stays"' not in reveal.text
    assert (await outbox.stats()).total(JobState.DEAD) == 1


async def test_oversized_form_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/purge", content=b"x" * 20_000)
    assert response.status_code == 413


# -- live data ---------------------------------------------------------------------


async def test_summary_json_workers_and_chart(outbox: Outbox) -> None:
    await outbox.enqueue(None, Flaky("held"))
    claimed = await outbox.store.claim("worker-7", 10, 60.0)
    assert len(claimed) == 1
    app = dashboard.app(outbox, allow_anonymous=True)
    async with client_for(app) as client:
        first = (await client.get("/api/summary")).json()
        page = await client.get("/")
    assert first["totals"]["running"] == 1
    assert [w["worker"] for w in first["workers"]] == ["worker-7"]
    assert first["workers"][0]["expired"] is False
    assert first["workers"][0]["last_heartbeat"] is None  # the lease length is not known
    assert "worker-7" in page.text
    with_lease = dashboard.app(outbox, allow_anonymous=True, lease=60.0)
    async with client_for(with_lease) as client:
        workers = (await client.get("/api/summary")).json()["workers"]
        page = await client.get("/")
    assert workers[0]["last_heartbeat"] in ("0 s", "1 s")  # claimed just now
    assert f"<td>{workers[0]['last_heartbeat']} ago</td>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


async def test_static_assets(outbox: Outbox) -> None:
    async with client_for(dashboard.app(outbox, allow_anonymous=True)) as client:
        js = await client.get("/static/dashboard.js")
        css = await client.get("/static/dashboard.css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "api/summary" in js.text
    assert css.headers["content-type"].startswith("text/css")


async def test_counts_are_read_once_per_refresh_and_after_an_action(outbox: Outbox) -> None:
    """Many polling pages cost one count per period; an action's effect shows at once."""
    [dead] = await dead_flaky(outbox, "x")
    app = dashboard.app(outbox, allow_anonymous=True, refresh=3600)
    async with client_for(app) as client:
        first = (await client.get("/api/summary")).json()
        await outbox.enqueue(None, Flaky("unseen"), delay=3600)
        cached = (await client.get("/api/summary")).json()
        token = await csrf_token(client)
        await client.post(f"/jobs/{dead}/retry", data=form(token))
        fresh = (await client.get("/api/summary")).json()
    assert (first["totals"]["queued"], first["totals"]["dead"]) == (0, 1)
    assert cached["totals"] == first["totals"]
    assert (fresh["totals"]["queued"], fresh["totals"]["dead"]) == (2, 0)
    assert len(fresh["chart"]) == 5  # two reads: a line per state
    assert {line["state"]: line["colour"] for line in fresh["chart"]}["dead"] == "#cf222e"


async def test_pages_polling_at_once_share_one_read(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale counts and five polls at once: one count of the jobs, not five."""
    reads, arrived = 0, 0
    all_in, release = asyncio.Event(), asyncio.Event()
    store: Any = outbox.store
    count_states = store.count_states

    async def held_counts(cap: int, type_cap: int) -> StateCounts:
        nonlocal reads
        reads += 1
        await release.wait()
        return cast("StateCounts", await count_states(cap, type_cap))

    async def auth(request: Request) -> str:
        # After the last poll's auth, nothing yields before the read (or the lock).
        nonlocal arrived
        arrived += 1
        if arrived == 5:
            all_in.set()
        return "ops@example.test"

    monkeypatch.setattr(store, "count_states", held_counts)
    async with client_for(dashboard.app(outbox, auth=auth, refresh=3600)) as client:
        polls = [asyncio.create_task(client.get("/api/summary")) for _ in range(5)]
        await all_in.wait()
        release.set()
        answers = await asyncio.gather(*polls)
    assert [answer.status_code for answer in answers] == [200] * 5
    assert reads == 1


async def test_chart_draws_the_counts_over_time(outbox: Outbox) -> None:
    app = dashboard.app(outbox, allow_anonymous=True, refresh=0)
    async with client_for(app) as client:
        await client.get("/")
        await outbox.enqueue(None, Flaky("one"), delay=3600)
        page = await client.get("/")
    assert '<svg class="chart"' in page.text
    assert 'data-state="queued"' in page.text
    assert "<title>queued: 1</title>" in page.text


async def test_a_database_error_is_a_503_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The jobs table gone: pages and actions say the database failed, not a 500."""
    path = tmp_path / "outbox.db"

    def drop_the_table() -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("DROP TABLE apitask_jobs")

    async with Outbox(open_store(f"sqlite:///{path}")) as box:
        await box.migrate()
        async with client_for(dashboard.app(box, allow_anonymous=True)) as client:
            token = await csrf_token(client)
            await asyncio.to_thread(drop_the_table)
            page = await client.get("/")
            action = await client.post("/purge", data=form(token, state="dead"))
    assert (page.status_code, action.status_code) == (503, 503)
    assert "did not answer" in page.text
    assert "no such table" not in page.text
    assert "no such table" in caplog.text
