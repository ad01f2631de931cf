"""The event loop that sync code (WSGI apps, scripts) hands async work to.

A WSGI request runs in a thread without an event loop, yet its tasks are
async (an SMTP client, an HTTP API). They run on one loop per process, in a
daemon thread started on first use, so a client object with pooled
connections (bound to the loop that opened them) can be shared by every
request of the process.
"""

from __future__ import annotations

import asyncio
import os
import threading

__all__ = ["background_loop", "running_loop"]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def background_loop() -> asyncio.AbstractEventLoop:
    """Return the process's background loop, starting its thread on first use."""
    loop = _loop
    if loop is None:
        with _lock:
            loop = _loop or _start()  # another thread may have won the race
    return loop


def _start() -> asyncio.AbstractEventLoop:
    global _loop
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="apitask-loop", daemon=True).start()
    _loop = loop
    return loop


def _forget_after_fork() -> None:
    # A forked child (gunicorn --preload) has the loop object but not the
    # thread that ran it: start a fresh one there on first use.
    global _loop, _lock
    _loop = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
