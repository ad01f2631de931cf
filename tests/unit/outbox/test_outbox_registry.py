"""TaskRegistry: exact names, prefixes, and every way a stored job can fail to decode."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from apitask import task
from apitask.outbox import JobDecodeError, TaskRegistry
from apitask.outbox._registry import encode_payload

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue


class Stored:
    def __init__(self, type: str, data: Mapping[str, JSONValue]) -> None:
        self.type = type
        self.data = dict(data)

    def payload(self) -> Mapping[str, JSONValue]:
        return self.data

    async def run(self) -> None:
        return None


def test_exact_names_beat_prefixes_and_the_longest_prefix_wins() -> None:
    """mailer.invite has its own factory; other mailer.* types share the prefix one."""
    registry = TaskRegistry()
    registry.register_prefix("mailer.", lambda t, p: Stored("prefix:" + t, p))
    registry.register_prefix("mailer.admin.", lambda t, p: Stored("long:" + t, p))
    registry.register("mailer.invite", lambda t, p: Stored("exact:" + t, p))
    assert registry.build("mailer.invite", "{}").type == "exact:mailer.invite"
    assert registry.build("mailer.recovery", "{}").type == "prefix:mailer.recovery"
    assert registry.build("mailer.admin.x", "{}").type == "long:mailer.admin.x"
    assert "mailer.anything" in registry
    assert "audit.write" not in registry
    assert 42 not in registry
    assert registry.factory_for("audit.write") is None


@pytest.mark.parametrize(
    ("type", "payload", "reason"),
    [
        ("nobody", "{}", "no task factory registered for type 'nobody'"),
        ("t.ok", "{oops", "undecodable payload"),
        ("t.ok", "[1, 2]", "payload is not a JSON object: list"),
        ("t.raises", "{}", "task factory for 't.raises' failed: KeyError('to')"),
        ("t.not_a_task", "{}", "returned 42, not a Task"),
    ],
)
def test_undecodable_jobs_raise_job_decode_error_with_the_reason(
    type: str, payload: str, reason: str
) -> None:
    """Every decoding failure is a JobDecodeError whose message says why."""
    registry = TaskRegistry()
    registry.register("t.ok", Stored)

    def raises(t: str, p: Mapping[str, JSONValue]) -> Stored:
        raise KeyError("to")

    registry.register("t.raises", raises)
    registry.register("t.not_a_task", lambda t, p: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(JobDecodeError) as caught:
        registry.build(type, payload)
    assert reason in str(caught.value)


def test_registration_is_validated() -> None:
    """Empty names, duplicates and non-callables are refused."""
    registry = TaskRegistry()
    registry.register("a", Stored)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", Stored)
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_prefix("", Stored)
    with pytest.raises(TypeError, match="must be callable"):
        registry.register("b", "not callable")  # type: ignore[arg-type]


def test_payloads_are_compact_json_and_must_be_serialisable() -> None:
    """Payloads are stored as compact UTF-8 JSON; other tasks or values are TypeErrors."""
    assert encode_payload(Stored("t", {"to": "é@example.test", "n": 1})) == (
        '{"to":"é@example.test","n":1}'
    )
    with pytest.raises(TypeError, match="has no payload"):
        encode_payload(task("plain", print))
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload(Stored("t", {"when": object()}))  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_payload(Stored("t", {"x": float("nan")}))
