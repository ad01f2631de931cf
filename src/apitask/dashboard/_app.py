"""The dashboard's ASGI app: pages, the JSON summary, and the POST actions."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..outbox import EVENTS_KEPT, JobFilter, JobState
from ._present import Sample, age, chart, pretty, visible
from ._security import CSRF_COOKIE, CSRF_FIELD, Csrf

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from .._histogram import Histogram
    from .._pool import WorkerPool
    from ..outbox import BrowsableStore, Job, Outbox
    from ._security import Auth

__all__ = ["Dashboard"]

logger = logging.getLogger("apitask.dashboard")

PAGE_SIZE = 50
RETRY_LIMIT = 10_000  # jobs one "retry all matching" touches at most
RETRY_PAGE = 500  # ids read per query while collecting them
# States with at most this many jobs are also counted by type: a count reads an
# index, a count by type a row per job (10,000 rows: 40 ms at 1M jobs).
TYPE_CAP = 1_000
_MAX_TEXT = 200  # longest type or request id a filter takes
_SECURITY_HEADERS = {
    # Nothing inline runs: the script and the style are files of this app.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _read(folder: str) -> dict[str, str]:
    files = resources.files(__package__).joinpath(folder)
    return {f.name: f.read_text("utf-8") for f in files.iterdir() if f.is_file()}


# Read at import, like the outbox's SQL: never a file read on the event loop.
TEMPLATES = _read("templates")
STATIC = _read("static")


class BadInput(ValueError):
    """A query or form field the dashboard cannot take (a 400 page)."""


def _one(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[-1].strip() or None if found else None


def _text(values: dict[str, list[str]], name: str) -> str | None:
    value = _one(values, name)
    if value is not None and (len(value) > _MAX_TEXT or not value.isprintable()):
        raise BadInput(f"{name}: at most {_MAX_TEXT} printable characters")
    return value


def _number(values: dict[str, list[str]], name: str) -> int | None:
    value = _one(values, name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadInput(f"{name}: expected a whole number")
    return int(value)


# What an action's redirect reports ("3 dead job(s) retried"): the page shows a
# notice only in this shape, so a crafted link cannot put other words on it.
_NOTICE = re.compile(r"^\d+ [a-z() ]{1,40}$")


def _notice(values: dict[str, list[str]]) -> str | None:
    value = _one(values, "done")
    return value if value is not None and _NOTICE.match(value) else None


def parse_filter(values: dict[str, list[str]]) -> JobFilter:
    """The job filter a query string or form names.

    Raises:
        BadInput: a field is malformed.
    """
    state = _one(values, "state")
    if state is not None and state not in JobState.__members__.values():
        raise BadInput(f"state: expected one of {', '.join(JobState)}")
    domain = _text(values, "domain")
    try:
        return JobFilter(
            state=None if state is None else JobState(state),
            type=_text(values, "type"),
            request_id=_text(values, "request_id"),
            domain=None if domain is None else domain.lower(),
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def filter_query(where: JobFilter, **extra: object) -> str:
    """``where`` as a query string (for links that keep the filter)."""
    pairs = {**asdict(where), **extra}
    return urlencode({k: v for k, v in pairs.items() if v is not None})


@dataclass
class Dashboard:
    """The state one mounted dashboard keeps: its sources, its policy, its chart."""

    outbox: Outbox
    pool: WorkerPool | None
    auth: Auth | None
    allow_anonymous: bool
    read_only: bool
    smtp_latency: Histogram | Callable[[], Histogram | None] | None
    csrf: Csrf
    refresh: float = 5.0
    lease: float | None = None
    count_cap: int = 10_000
    samples: collections.deque[Sample] = field(
        default_factory=lambda: collections.deque(maxlen=120)
    )
    cached: dict[str, Any] | None = None
    # Pages that poll while the counts are stale wait for one read, not one each.
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.DictLoader(TEMPLATES),
            # Every template is .html: escape every value put in one.
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals.update(age=age, filter_query=filter_query, JobFilter=JobFilter)

    @property
    def store(self) -> BrowsableStore:
        return cast("BrowsableStore", self.outbox.store)

    # -- plumbing -------------------------------------------------------------------

    async def who(self, request: Request) -> Any:
        """What ``auth`` says of the request's user; ``"anonymous"`` when allowed; else None."""
        if self.auth is None:
            return "anonymous" if self.allow_anonymous else None
        identity = self.auth(request)
        if inspect.isawaitable(identity):
            identity = await identity
        return identity

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        cookie = request.cookies.get(CSRF_COOKIE) or Csrf.new_cookie()
        base = request.scope.get("root_path", "")
        html = self.templates.get_template(template).render(
            base=base,
            read_only=self.read_only,
            csrf_field=CSRF_FIELD,
            csrf=self.csrf.field(cookie),
            identity=context.pop("identity", None),
            **context,
        )
        response = HTMLResponse(html, status, headers=_SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != cookie:  # none yet (or an empty one)
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                path=base or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    async def summary(self) -> dict[str, Any]:
        """Counts by state and type, the queue's age, the workers, and the pool's gauges.

        The database part is read at most once every ``refresh`` seconds, however
        many pages poll. Each state is counted up to ``count_cap`` through an
        index (a few ms at 1M jobs, docs/dashboard.md), never by reading the
        whole table. Each read is a point of the chart. An action reads it afresh.
        """
        async with self.reading:
            now = time.time()
            if self.cached is None or now - self.samples[-1].at >= self.refresh:
                self.cached = await self.read_counts()
                self.samples.append(Sample(now, self.cached["totals"]))
        return {**self.cached, "pool": self.pool_gauges()}

    async def read_counts(self) -> dict[str, Any]:
        type_cap = min(self.count_cap, TYPE_CAP)
        counts = await self.store.count_states(self.count_cap, type_cap)
        oldest = await self.store.oldest_due()
        workers = await self.store.workers()
        now = datetime.now(UTC)
        return {
            # Numbers for the chart: a capped state's estimate, or the cap.
            "totals": {state.value: counts.total(state) for state in JobState},
            # What the page prints: "1,234", "10,000+" or "≈ 912,000".
            "shown": {state.value: counts.shown(state) for state in JobState},
            "capped": sorted(state.value for state in counts.capped),
            # States with jobs, too many to count by type: their cells show "…".
            "untyped": [
                s.value for s in JobState if counts.counts.get(s) and s not in counts.typed
            ],
            "type_cap": type_cap,
            "cap": counts.cap,
            "by_type": {
                type: {state.value: n for state, n in by_state.items()}
                for type, by_state in sorted(counts.by_type.items())
            },
            "oldest_due": age(oldest, now) if oldest else None,
            "oldest_due_seconds": (now - oldest).total_seconds() if oldest else None,
            "workers": [
                {
                    "worker": w.worker,
                    "jobs": w.jobs,
                    "lease_until": w.lease_until.isoformat(timespec="seconds"),
                    "oldest_lease_until": w.oldest_lease_until.isoformat(timespec="seconds"),
                    "expired": w.oldest_lease_until < now,
                    # A heartbeat (or the claim) sets a lease to now + lease.
                    "last_heartbeat": None
                    if self.lease is None
                    else age(w.lease_until - timedelta(seconds=self.lease), now),
                }
                for w in workers
            ],
        }

    def pool_gauges(self) -> dict[str, Any] | None:
        pool = self.pool
        if pool is None:
            return None
        report = pool.report
        return {
            "state": pool.state.value,
            "queued": pool.queue_depth,
            "running": pool.running,
            "retrying": pool.retrying,
            "oldest_queued_seconds": round(pool.oldest_queued_age, 3),
            "drain": None
            if report is None
            else {
                "complete": report.complete,
                "timed_out": report.timed_out,
                "leftovers": len(report.leftovers),
                "spilled": len(report.spilled),
            },
        }

    def latency(self) -> list[tuple[str, int]] | None:
        """The SMTP send latency histogram: (upper bound, sends in that bucket)."""
        histogram = self.smtp_latency
        if callable(histogram):
            histogram = histogram()
        if histogram is None:
            return None
        buckets, below = [], 0
        for bound, total in histogram.cumulative():
            buckets.append((bound, total - below))
            below = total
        return buckets

    # -- pages ------------------------------------------------------------------

    async def index(self, request: Request, identity: Any) -> Response:
        values = parse_qs(request.url.query)
        where = parse_filter(values)
        before = _number(values, "before")
        jobs = await self.store.search(where, before, PAGE_SIZE + 1)
        more = len(jobs) > PAGE_SIZE
        jobs = jobs[:PAGE_SIZE]
        summary = await self.summary()
        return self.render(
            request,
            "index.html",
            identity=identity,
            where=where,
            states=[s.value for s in JobState],
            jobs=jobs,
            next_before=jobs[-1].id if more else None,
            summary=summary,
            lines=chart(self.samples),
            age_of_chart=age(
                datetime.fromtimestamp(self.samples[0].at, UTC),
                datetime.fromtimestamp(self.samples[-1].at, UTC),
            ),
            latency=self.latency(),
            notice=_notice(values),
        )

    async def job_page(self, request: Request, identity: Any, *, reveal: bool = False) -> Response:
        job = await self._job(request)
        if job is None:
            return self.render(
                request, "error.html", 404, identity=identity, message="No such job."
            )
        if reveal:
            logger.warning("dashboard: %s revealed the payload of job %s", identity, job.id)
        # The history never holds payload contents: errors (as last_error keeps
        # them), reasons, workers and operators.
        events = await self.store.events(job.id, EVENTS_KEPT)
        return self.render(
            request,
            "job.html",
            identity=identity,
            job=job,
            events=events,
            events_kept=EVENTS_KEPT,
            shown=visible(job),
            payload=pretty(job.payload) if reveal else None,
            pending=job.state in (JobState.QUEUED, JobState.RETRYING),
            notice=_notice(parse_qs(request.url.query)),
        )

    async def _job(self, request: Request) -> Job | None:
        raw = str(request.path_params["job_id"])
        if not raw.isdigit() or len(raw) > 18:
            raise BadInput("job id: expected a whole number")
        return await self.store.job(int(raw))

    async def api_summary(self, request: Request, identity: Any) -> Response:
        data = await self.summary()
        data["chart"] = [
            {"state": line.state, "colour": line.colour, "points": line.points, "last": line.last}
            for line in chart(self.samples)
        ]
        return JSONResponse(data, headers=_SECURITY_HEADERS)

    # -- actions ----------------------------------------------------------------

    def done(self, request: Request, path: str, message: str) -> Response:
        self.cached = None  # the next page shows the action's effect
        base = request.scope.get("root_path", "")
        query = urlencode({"done": message})
        return RedirectResponse(f"{base}{path}?{query}", status_code=303)

    async def _existing(self, request: Request) -> Job:
        job = await self._job(request)
        if job is None:
            raise BadInput("no such job")
        return job

    async def retry_one(self, request: Request, who: Any, form: dict[str, list[str]]) -> Response:
        job = await self._existing(request)
        n = await self.outbox.retry([job.id], by=f"{who} on the dashboard")
        logger.warning("dashboard: %s retried dead job %s (%d retried)", who, job.id, n)
        return self.done(request, f"/jobs/{job.id}", f"{n} job retried")

    async def cancel_one(self, request: Request, who: Any, form: dict[str, list[str]]) -> Response:
        job = await self._existing(request)
        n = await self.store.cancel([job.id], f"cancelled by {who} on the dashboard")
        logger.warning("dashboard: %s cancelled job %s (%d cancelled)", who, job.id, n)
        return self.done(request, f"/jobs/{job.id}", f"{n} job cancelled")

    async def reveal(self, request: Request, who: Any, form: dict[str, list[str]]) -> Response:
        return await self.job_page(request, who, reveal=True)  # logged there, if the job is

    async def retry_matching(
        self, request: Request, who: Any, form: dict[str, list[str]]
    ) -> Response:
        where = replace(parse_filter(form), state=JobState.DEAD)
        ids: list[int] = []
        before = None
        while True:  # keyset pages of the matching dead jobs, up to RETRY_LIMIT
            page = await self.store.search(where, before, RETRY_PAGE)
            ids.extend(job.id for job in page)
            if len(page) < RETRY_PAGE or len(ids) >= RETRY_LIMIT:
                break
            before = page[-1].id
        # Never "every dead job" (ids=None) by accident: an empty list retries none.
        n = await self.outbox.retry(ids[:RETRY_LIMIT], by=f"{who} on the dashboard")
        logger.warning(
            "dashboard: %s retried %d dead job(s) matching %s", who, n, filter_query(where)
        )
        return self.done(request, "/", f"{n} dead job(s) retried")

    async def purge(self, request: Request, who: Any, form: dict[str, list[str]]) -> Response:
        state = _one(form, "state")
        if state not in (JobState.SUCCEEDED, JobState.DEAD):
            raise BadInput("state: only succeeded or dead jobs can be purged")
        older_than = _number(form, "older_than") or 0
        n = await self.outbox.purge(JobState(state), float(older_than))
        logger.warning(
            "dashboard: %s purged %d %s job(s) finished over %d s ago", who, n, state, older_than
        )
        return self.done(request, "/", f"{n} {state} job(s) purged")
