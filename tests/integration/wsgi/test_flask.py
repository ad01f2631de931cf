"""apitask.wsgi.TaskMiddleware around a Flask app, through httpx.WSGITransport, in threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from flask import Flask, Response, stream_with_context

import apitask
from apitask.wsgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterator

NOT_YET = 0.05  # see tests/unit/test_wsgi.py


def flask_app(wait: Any = "before_response") -> tuple[Flask, dict[str, threading.Event], list[str]]:
    """A Flask app whose views hand tasks over with run_sync."""
    app = Flask(__name__)
    app.wsgi_app = TaskMiddleware(app.wsgi_app, wait=wait)  # type: ignore[method-assign]
    gates: dict[str, threading.Event] = {}
    log: list[str] = []  # list.append is atomic: safe from every thread

    def blocked_mail(name: str) -> None:
        gates.setdefault(name, threading.Event()).wait()
        log.append(f"{name} done")

    async def async_mail(name: str) -> None:
        await asyncio.sleep(0)
        log.append(f"{name} done")

    @app.get("/signup/<name>")
    def signup(name: str) -> str:
        gates.setdefault(name, threading.Event())
        apitask.run_sync(apitask.task("mail.welcome", blocked_mail, name))
        apitask.run_sync(apitask.task("mail.audit", async_mail, f"{name} audit"))
        return f"hello {name}"

    @app.get("/stream/<name>")
    def stream(name: str) -> Response:
        gates.setdefault(name, threading.Event())
        apitask.run_sync(apitask.task("mail.welcome", blocked_mail, name))

        def chunks() -> Iterator[str]:
            yield "a"
            yield "b"
            yield "c"

        return Response(stream_with_context(chunks()))

    @app.get("/broken")
    def broken() -> str:
        apitask.run_sync(apitask.task("mail.audit", async_mail, "broken audit"))
        raise RuntimeError("view failed")

    return app, gates, log


def client(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test")


def test_response_comes_after_the_sync_and_async_tasks() -> None:
    """before_response: both tasks (thread and loop) are done when the response is read."""
    app, gates, log = flask_app()
    gates["ada"] = threading.Event()
    gates["ada"].set()
    with client(app) as c:
        assert c.get("/signup/ada").text == "hello ada"
    assert sorted(log) == ["ada audit done", "ada done"]


def test_concurrent_requests_each_wait_only_for_their_own_tasks() -> None:
    """Real threads: a request whose task is blocked holds nobody else's response."""
    app, gates, log = flask_app()
    gates["slow"] = threading.Event()
    with client(app) as c, ThreadPoolExecutor(max_workers=4) as pool:
        slow = pool.submit(c.get, "/signup/slow")
        fast = [pool.submit(c.get, f"/signup/fast{i}") for i in range(3)]
        for i in range(len(fast)):
            gates.setdefault(f"fast{i}", threading.Event()).set()
        assert [f.result(timeout=10).text for f in fast] == [f"hello fast{i}" for i in range(3)]
        assert not slow.done()  # its task is still blocked
        gates["slow"].set()
        assert slow.result(timeout=10).text == "hello slow"
    assert "slow done" in log


def test_streamed_body_flows_until_its_last_chunk() -> None:
    """before_response with a streamed body: earlier chunks arrive, the last one waits."""
    app, gates, log = flask_app()
    got_two = threading.Event()

    def read() -> None:  # one thread iterates, as a WSGI server does
        with client(app) as c, c.stream("GET", "/stream/bob") as response:
            for chunk in response.iter_raw():
                log.append(chunk.decode())
                if chunk == b"b":
                    got_two.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert got_two.wait(10)  # "a" and "b" flowed while the task is blocked
    reader.join(NOT_YET)
    assert reader.is_alive()  # "c" is held
    gates["bob"].set()
    reader.join()
    assert log == ["a", "b", "bob done", "c"]


def test_after_response_body_is_read_while_the_task_runs_and_close_waits() -> None:
    """after_response: the whole body arrives; closing the response waits for the task."""
    app, gates, log = flask_app(wait="after_response")
    got_all = threading.Event()

    def read() -> None:
        with client(app) as c, c.stream("GET", "/stream/eve") as response:
            for chunk in response.iter_raw():  # closes the response at the end
                log.append(chunk.decode())
                if chunk == b"c":
                    got_all.set()
            log.append("closed")

    reader = threading.Thread(target=read)
    reader.start()
    assert got_all.wait(10)  # every chunk arrived while the task is blocked
    reader.join(NOT_YET)
    assert reader.is_alive()  # closing waits for the task
    gates["eve"].set()
    reader.join()
    assert log == ["a", "b", "c", "eve done", "closed"]


def test_a_failing_view_still_waits_for_its_tasks() -> None:
    """Flask turns the error into a 500; the tasks were done before it went out."""
    app, _, log = flask_app()
    with client(app) as c:
        assert c.get("/broken").status_code == 500
    assert log == ["broken audit done"]


def test_propagated_view_errors_still_wait_for_the_tasks() -> None:
    """With PROPAGATE_EXCEPTIONS the error leaves the app; the tasks finish first."""
    app, _, log = flask_app()
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with client(app) as c, pytest.raises(RuntimeError, match="view failed"):
        c.get("/broken")
    assert log == ["broken audit done"]
