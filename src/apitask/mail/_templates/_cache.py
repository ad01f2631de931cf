"""The custom-template cache and its background reloader (§4.4).

Per template, the cache keeps the compiled template with when it was loaded
(``created``) and last tried (``checked``), and whether it is the built-in
default standing in for a custom template that could not be loaded:

* a fresh entry (younger than ``max_age``) is used as it is;
* an expired or default entry tried within ``retry_interval`` is used too,
  so an outage costs one attempt per interval, not one per mail;
* otherwise it is loaded again. Concurrent loads of one template share one
  fetch. A failed load keeps the last good template, or falls back to the
  default, and is logged: sending never fails because a template server is
  down. (A template that loads but does not parse counts as failed too.)

:class:`TemplateReloader` refreshes the cache in the background so that
mails rarely wait for a fetch.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._compile import compile_template
from ._gotemplate import TemplateError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._compile import CompiledTemplate
    from ._source import TemplateSource

__all__ = ["TemplateCache", "TemplateReloader"]

logger = logging.getLogger("apitask.mail")

_Key = tuple["TemplateSource", bool]


@dataclass(slots=True)
class _Entry:
    template: CompiledTemplate
    created: float
    checked: float
    is_default: bool


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    fallback: CompiledTemplate


class TemplateCache:
    """Custom templates by source, loaded on demand and kept fresh.

    One cache can serve several mailers (say, one rebuilt on a config
    reload): entries are keyed by source, not by mailer.

    Args:
        max_size: the largest template accepted, in bytes
            (``GOTRUE_MAILER_TEMPLATE_MAX_SIZE``).
        fetch_timeout: seconds one load may take (GoTrue: 10).
        max_age: seconds a loaded template is used before it is loaded
            again (``GOTRUE_MAILER_TEMPLATE_MAX_AGE``).
        retry_interval: seconds between two attempts to load one template
            (``GOTRUE_MAILER_TEMPLATE_RETRY_INTERVAL``).
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        max_size: int = 1_000_000,
        fetch_timeout: float = 10.0,
        max_age: float = 600.0,
        retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_size", max_size),
            ("fetch_timeout", fetch_timeout),
            ("max_age", max_age),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if retry_interval < 0:
            raise ValueError(f"retry_interval cannot be negative, got {retry_interval!r}")
        self.max_size = max_size
        self.fetch_timeout = fetch_timeout
        self.max_age = max_age
        self.retry_interval = retry_interval
        self._clock = clock
        self._entries: dict[_Key, _Entry] = {}
        self._specs: dict[_Key, _Spec] = {}
        self._loading: dict[_Key, asyncio.Task[CompiledTemplate]] = {}
        self.last_used = clock()

    def idle_for(self) -> float:
        """Seconds since a mailer last asked for a template."""
        return self._clock() - self.last_used

    def add(
        self, source: TemplateSource, *, name: str, html: bool, fallback: CompiledTemplate
    ) -> None:
        """Make ``source`` known, so :meth:`refresh` loads it ahead of use."""
        self._specs.setdefault((source, html), _Spec(name, fallback))

    async def get(
        self, source: TemplateSource, *, name: str, html: bool, fallback: CompiledTemplate
    ) -> CompiledTemplate:
        """The template from ``source``, loading it if it is missing or due.

        ``fallback`` (the built-in default) is used when ``source`` has never
        loaded; it never raises for an unreachable or broken source.
        """
        key = (source, html)
        self.add(source, name=name, html=html, fallback=fallback)
        now = self.last_used = self._clock()
        entry = self._entries.get(key)
        if entry is not None and (
            (not entry.is_default and now - entry.created < self.max_age)
            or now - entry.checked < self.retry_interval
        ):
            return entry.template
        return await self._load(key)

    async def refresh(self, *, everything: bool = False) -> int:
        """Load the known templates that are due; return how many were tried.

        A template is due when it is a default stand-in, or has reached 90%
        of ``max_age`` (so it is renewed before a mail has to wait), but not
        within ``retry_interval`` of its last attempt. ``everything`` loads
        all known templates regardless.
        """
        now = self._clock()
        due: list[_Key] = []
        for key in self._specs:
            entry = self._entries.get(key)
            if (
                everything
                or entry is None
                or (
                    now - entry.checked >= self.retry_interval
                    and (entry.is_default or now - entry.created >= 0.9 * self.max_age)
                )
            ):
                due.append(key)
        await asyncio.gather(*(self._load(key) for key in due))
        return len(due)

    async def _load(self, key: _Key) -> CompiledTemplate:
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key), name=f"template {key[0].location}")
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        # Shielded: a cancelled mail must not cancel the load others wait for.
        return await asyncio.shield(task)

    async def _fetch(self, key: _Key) -> CompiledTemplate:
        source, html = key
        spec = self._specs[key]
        try:
            text = await source.read(
                name=spec.name, max_size=self.max_size, timeout=self.fetch_timeout
            )
            template = compile_template(text, name=spec.name, html=html)
        except TemplateError as exc:
            now = self._clock()
            entry = self._entries.get(key)
            kept = "the last good template" if entry is not None else "the default"
            logger.warning(
                "templatemailer_template_load_error: %s; using %s",
                exc,
                kept,
                extra={"event": "templatemailer_template_load_error", "template": spec.name},
            )
            if entry is None:
                entry = self._entries[key] = _Entry(spec.fallback, now, now, is_default=True)
            entry.checked = now
            return entry.template
        now = self._clock()
        self._entries[key] = _Entry(template, now, now, is_default=False)
        return template


class TemplateReloader:
    """Refreshes a :class:`TemplateCache` in the background (GoTrue's reloader).

    The first run loads every known template; later runs, every
    ``max(1, retry_interval / 4)`` seconds, load what :meth:`TemplateCache.refresh`
    finds due, but only while mail was asked for within ``max_idle`` seconds.
    Use as ``async with TemplateReloader(cache): ...`` or :meth:`start` and
    :meth:`aclose`.

    Args:
        cache: the cache to keep fresh.
        max_idle: seconds without a mail after which reloading pauses
            (``GOTRUE_MAILER_TEMPLATE_RELOADING_MAX_IDLE``).
        interval: seconds between runs; GoTrue's rule when not given.
    """

    def __init__(
        self, cache: TemplateCache, *, max_idle: float = 1200.0, interval: float | None = None
    ) -> None:
        self._cache = cache
        self._max_idle = max_idle
        self._interval = max(1.0, cache.retry_interval / 4) if interval is None else interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reloading (from a running event loop)."""
        if self._task is not None:
            raise RuntimeError("the template reloader is already started")
        self._task = asyncio.create_task(self._run(), name="apitask template reloader")

    async def aclose(self) -> None:
        """Stop reloading and wait for the background task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> TemplateReloader:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run_once(self, *, first: bool = False) -> int:
        """One run: how many templates it tried to load (0 while idle).

        ``first`` loads everything; later runs load what is due, and nothing
        once no mail was asked for within ``max_idle``.
        """
        if not first and self._cache.idle_for() > self._max_idle:
            return 0
        return await self._cache.refresh(everything=first)

    async def _run(self) -> None:
        first = True
        while True:
            try:
                await self.run_once(first=first)
            except Exception:
                # Loads handle their own failures, so this is a bug; log it
                # rather than let the reloader die silently.
                logger.exception("template reloader run failed")
            first = False
            await asyncio.sleep(self._interval)
