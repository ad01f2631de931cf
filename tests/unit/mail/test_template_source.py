"""Template sources (files and URLs) and the cache's rules, against a real HTTP server.

Time in the cache is a fake clock the tests move; concurrency is ordered by
the server's events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from apitask.mail import (
    TemplateCache,
    TemplateError,
    TemplateReloader,
    TemplateSource,
    compile_template,
)

from ._template_server import TemplateServer, template_server

__all__ = ["template_server"]  # the fixture, imported for pytest

DATA = {"Email": "ann@example.com", "Token": "123456"}
FALLBACK = compile_template("default for {{ .Email }}", name="invite html", html=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(clock: Clock, **options: float) -> TemplateCache:
    settings: dict[str, float] = {"max_age": 600.0, "retry_interval": 10.0, "fetch_timeout": 5.0}
    settings.update(options)
    return TemplateCache(clock=clock, **settings)  # type: ignore[arg-type]


async def get(cache: TemplateCache, source: TemplateSource) -> str:
    template = await cache.get(source, name="invite html", html=True, fallback=FALLBACK)
    return template.render(DATA)


# ---------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("value", "kind", "location"),
    [
        ("https://cdn.example.com/invite.html", "url", "https://cdn.example.com/invite.html"),
        ("HTTP://cdn.example.com/a", "url", "HTTP://cdn.example.com/a"),
        ("file:///etc/mail/invite.html", "file", "/etc/mail/invite.html"),
        ("/etc/mail/invite.html", "file", "/etc/mail/invite.html"),
        ("./invite.html", "file", "./invite.html"),
        ("../invite.html", "file", "../invite.html"),
        ("templates/invite.html", "url", "https://app.example.com/templates/invite.html"),
        ("/", "file", "/"),
        (Path("rel/invite.html"), "file", "rel/invite.html"),
    ],
)
def test_locations_parse_as_gotrue_reads_them_plus_files(
    value: str | Path, kind: str, location: str
) -> None:
    source = TemplateSource.parse(value, site_url="https://app.example.com/")
    assert (source.kind, source.location) == (kind, location)


def test_bad_locations_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be empty"):
        TemplateSource.parse("")
    with pytest.raises(ValueError, match="relative and no site_url"):
        TemplateSource.parse("invite.html")


async def test_a_file_is_read_off_the_loop_within_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "invite.html"
    await asyncio.to_thread(path.write_text, "<p>Hi {{ .Email }} ✓</p>", encoding="utf-8")
    source = TemplateSource("file", str(path))
    text = await source.read(name="invite", max_size=100, timeout=5)
    assert text == "<p>Hi {{ .Email }} ✓</p>"
    exact = len(text.encode())
    assert await source.read(name="invite", max_size=exact, timeout=5) == text
    with pytest.raises(TemplateError, match=f"larger than the limit of {exact - 1} bytes"):
        await source.read(name="invite", max_size=exact - 1, timeout=5)


async def test_unreadable_files_are_template_errors(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"^template 'invite': cannot read .*missing\.html"):
        await TemplateSource("file", str(tmp_path / "missing.html")).read(
            name="invite", max_size=100, timeout=5
        )
    latin1 = tmp_path / "latin1.html"
    await asyncio.to_thread(latin1.write_bytes, "café".encode("latin-1"))
    with pytest.raises(TemplateError, match="is not UTF-8"):
        await TemplateSource("file", str(latin1)).read(name="invite", max_size=100, timeout=5)


async def test_a_url_is_fetched_and_only_200_is_accepted(
    template_server: TemplateServer,
) -> None:
    ok = TemplateSource("url", template_server.serve("/ok", "<p>{{ .Token }}</p>"))
    assert await ok.read(name="invite", max_size=100, timeout=5) == "<p>{{ .Token }}</p>"
    for status in (404, 500):
        source = TemplateSource("url", template_server.serve(f"/{status}", "oops", status))
        with pytest.raises(TemplateError, match=f"answered {status}, not 200"):
            await source.read(name="invite", max_size=100, timeout=5)
    empty = TemplateSource("url", template_server.serve("/empty", "", 204))
    with pytest.raises(TemplateError, match="answered 204, not 200"):
        await empty.read(name="invite", max_size=100, timeout=5)


async def test_an_oversize_answer_is_refused_not_truncated(
    template_server: TemplateServer,
) -> None:
    source = TemplateSource("url", template_server.serve("/big", "x" * 101))
    with pytest.raises(TemplateError, match="larger than the limit of 100 bytes"):
        await source.read(name="invite", max_size=100, timeout=5)


async def test_a_slow_server_hits_the_deadline(template_server: TemplateServer) -> None:
    url = template_server.serve("/slow", "late")
    template_server.held.add("/slow")
    with pytest.raises(TemplateError, match=r"took longer than 0\.2s"):
        await TemplateSource("url", url).read(name="invite", max_size=100, timeout=0.2)
    assert template_server.count("/slow") == 1
    template_server.release.set()


async def test_an_unreachable_server_is_a_template_error() -> None:
    url = "http://127.0.0.1:9/gone"  # the discard port: nobody listens
    with pytest.raises(TemplateError, match=r"cannot read http://127\.0\.0\.1:9/gone"):
        await TemplateSource("url", url).read(name="invite", max_size=100, timeout=5)


# ---------------------------------------------------------------- cache


def test_cache_settings_are_checked() -> None:
    for bad in ({"max_size": 0}, {"fetch_timeout": 0}, {"max_age": -1}):
        with pytest.raises(ValueError, match="must be positive"):
            TemplateCache(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_interval cannot be negative"):
        TemplateCache(retry_interval=-1)


async def test_a_fresh_entry_is_used_and_an_old_one_reloaded(
    template_server: TemplateServer,
) -> None:
    clock = Clock()
    cache = make_cache(clock)
    source = TemplateSource("url", template_server.serve("/t", "v1 {{ .Email }}"))
    assert await get(cache, source) == "v1 ann@example.com"
    template_server.serve("/t", "v2 {{ .Email }}")
    clock.now += 599
    assert await get(cache, source) == "v1 ann@example.com"
    assert template_server.count("/t") == 1
    clock.now += 1
    assert await get(cache, source) == "v2 ann@example.com"
    assert template_server.count("/t") == 2


async def test_an_outage_keeps_the_last_good_template_and_retries_per_interval(
    template_server: TemplateServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    cache = make_cache(clock)
    source = TemplateSource("url", template_server.serve("/t", "good {{ .Token }}"))
    assert await get(cache, source) == "good 123456"
    template_server.serve("/t", "down", 503)
    clock.now += 600
    with caplog.at_level(logging.WARNING, logger="apitask.mail"):
        assert await get(cache, source) == "good 123456"
    assert "answered 503" in caplog.text
    assert "using the last good template" in caplog.text
    assert template_server.count("/t") == 2
    clock.now += 9.9  # within the retry interval: no new attempt
    assert await get(cache, source) == "good 123456"
    assert template_server.count("/t") == 2
    template_server.serve("/t", "back {{ .Token }}")
    clock.now += 0.1
    assert await get(cache, source) == "back 123456"
    assert template_server.count("/t") == 3


async def test_without_a_good_template_the_default_stands_in_until_the_source_works(
    template_server: TemplateServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    cache = make_cache(clock)
    source = TemplateSource("url", template_server.serve("/t", "{{ if .Email }}unclosed"))
    with caplog.at_level(logging.WARNING, logger="apitask.mail"):
        assert await get(cache, source) == "default for ann@example.com"
    assert "{{ if }} is never closed" in caplog.text
    assert "using the default" in caplog.text
    assert caplog.records[0].event == "templatemailer_template_load_error"  # type: ignore[attr-defined]
    # A default entry is retried after the retry interval, not after max_age.
    template_server.serve("/t", "custom {{ .Email }}")
    clock.now += 9
    assert await get(cache, source) == "default for ann@example.com"
    clock.now += 1
    assert await get(cache, source) == "custom ann@example.com"
    assert template_server.count("/t") == 2


async def test_concurrent_loads_of_one_template_share_one_fetch(
    template_server: TemplateServer,
) -> None:
    cache = make_cache(Clock())
    source = TemplateSource("url", template_server.serve("/t", "shared {{ .Token }}"))
    template_server.held.add("/t")
    first = asyncio.create_task(get(cache, source))
    second = asyncio.create_task(get(cache, source))
    cancelled = asyncio.create_task(get(cache, source))
    await asyncio.to_thread(template_server.seen.wait, 10)
    cancelled.cancel()
    template_server.release.set()
    assert list(await asyncio.gather(first, second)) == ["shared 123456", "shared 123456"]
    # The cancelled waiter did not cancel the load the others waited for.
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert template_server.count("/t") == 1


async def test_one_cache_serves_html_and_text_of_a_source_apart(tmp_path: Path) -> None:
    path = tmp_path / "t"
    await asyncio.to_thread(path.write_text, "[{{ .Email }}]")
    cache = make_cache(Clock())
    source = TemplateSource("file", str(path))
    html = await cache.get(source, name="h", html=True, fallback=FALLBACK)
    text = await cache.get(source, name="t", html=False, fallback=FALLBACK)
    assert html.render({"Email": "<b>"}) == "[&lt;b&gt;]"
    assert text.render({"Email": "<b>"}) == "[<b>]"


async def test_refresh_loads_what_is_due(template_server: TemplateServer) -> None:
    clock = Clock()
    cache = make_cache(clock)
    fresh = TemplateSource("url", template_server.serve("/fresh", "fresh"))
    broken = TemplateSource("url", template_server.serve("/broken", "x", 500))
    for source in (fresh, broken):
        cache.add(source, name="invite html", html=True, fallback=FALLBACK)
    assert await cache.refresh() == 2  # never loaded: both due
    assert await cache.refresh() == 0  # checked just now
    clock.now += 10  # the default stand-in is due again, the fresh one is not
    assert await cache.refresh() == 1
    assert template_server.count("/broken") == 2
    clock.now += 540  # 90% of max_age since /fresh loaded
    assert await cache.refresh() == 2
    assert template_server.count("/fresh") == 2
    assert await cache.refresh(everything=True) == 2
    assert template_server.count("/fresh") == 3


# ---------------------------------------------------------------- reloader


async def test_the_reloader_pauses_while_no_mail_is_asked_for(
    template_server: TemplateServer,
) -> None:
    clock = Clock()
    cache = make_cache(clock)
    source = TemplateSource("url", template_server.serve("/t", "t"))
    cache.add(source, name="invite html", html=True, fallback=FALLBACK)
    reloader = TemplateReloader(cache, max_idle=1200)
    assert await reloader.run_once(first=True) == 1
    clock.now += 1201
    assert cache.idle_for() == 1201
    assert await reloader.run_once() == 0  # idle: paused, though the entry is due
    assert await reloader.run_once(first=True) == 1  # the first run ignores idleness
    await get(cache, source)  # a mail: no longer idle
    clock.now += 540
    assert await reloader.run_once() == 1


async def test_the_reloader_runs_in_the_background_and_stops_cleanly(
    template_server: TemplateServer,
) -> None:
    clock = Clock()
    cache = make_cache(clock, retry_interval=0.0)
    source = TemplateSource("url", template_server.serve("/t", "v1"))
    cache.add(source, name="invite html", html=True, fallback=FALLBACK)
    async with TemplateReloader(cache, interval=0.01) as reloader:
        # The first run loads eagerly: the mail then needs no fetch.
        await asyncio.to_thread(template_server.seen.wait, 10)
        assert await get(cache, source) == "v1"
        # Make the entry due; a later run fetches the new version by itself.
        template_server.seen.clear()
        template_server.serve("/t", "v2")
        clock.now += 600
        await asyncio.to_thread(template_server.seen.wait, 10)
        # The mail joins that load (or finds its result): no fetch of its own.
        assert await get(cache, source) == "v2"
        assert template_server.count("/t") == 2
        with pytest.raises(RuntimeError, match="already started"):
            reloader.start()
    await reloader.aclose()  # closing twice is harmless


async def test_a_failing_run_is_logged_and_the_reloader_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache(Clock())
    calls: list[bool] = []
    second_run = asyncio.Event()

    async def refresh(*, everything: bool = False) -> int:
        calls.append(everything)
        if len(calls) == 1:
            raise RuntimeError("bug in refresh")
        second_run.set()
        return 0

    monkeypatch.setattr(cache, "refresh", refresh)
    reloader = TemplateReloader(cache, interval=0.001)
    with caplog.at_level(logging.ERROR, logger="apitask.mail"):
        reloader.start()
        await second_run.wait()
        await reloader.aclose()
    assert calls[:2] == [True, False]
    assert "template reloader run failed" in caplog.text
    assert "bug in refresh" in caplog.text


def test_the_reloader_interval_follows_gotrue() -> None:
    assert TemplateReloader(TemplateCache(retry_interval=10))._interval == 2.5
    assert TemplateReloader(TemplateCache(retry_interval=2))._interval == 1.0
