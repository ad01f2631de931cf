"""What the page shows of a job, and the small server-side chart.

A payload is the task's data: a mail's recipient, its body with a one-time
code or link, a webhook's body. The page shows none of it by default: a
mail job shows its recipient and headers, any other job the names of its
payload's fields. The whole payload only on an admin's explicit request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..outbox import Job

__all__ = ["Sample", "Visible", "age", "chart", "visible"]

# Fields of a stored mail message (Message.to_dict) shown without asking.
_MAIL_SHOWN = ("to", "subject", "type", "message_id", "date")


@dataclass(frozen=True, slots=True)
class Visible:
    """The part of a payload the page shows.

    Attributes:
        fields: ``(name, value)`` pairs shown as they are.
        headers: a mail's extra headers.
        hidden: names of the fields kept back (a mail's ``html`` and ``text``).
        erased: the payload was erased (a succeeded job keeps ``{}``).
    """

    fields: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    hidden: tuple[str, ...] = ()
    erased: bool = False


def _load(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def visible(job: Job) -> Visible:
    """What of ``job``'s payload may be shown without an explicit request."""
    data = _load(job.payload)
    if data == {}:
        return Visible(erased=True)
    if not isinstance(data, dict):
        return Visible(hidden=("payload",))
    message = data.get("message")
    if job.type.startswith("mailer.") and isinstance(message, dict):
        headers = message.get("headers")
        return Visible(
            fields=tuple((k, str(message[k])) for k in _MAIL_SHOWN if k in message),
            headers=tuple(
                (str(k), str(v)) for k, v in (headers.items() if isinstance(headers, dict) else ())
            ),
            hidden=tuple(k for k in message if k not in _MAIL_SHOWN and k != "headers"),
        )
    return Visible(hidden=tuple(str(k) for k in data))


def pretty(payload: str) -> str:
    """The payload indented for reading (as stored when it is not JSON)."""
    data = _load(payload)
    return payload if data is None else json.dumps(data, indent=2, ensure_ascii=False)


def age(when: datetime | None, now: datetime | None = None) -> str:
    """``when`` as a short age ("3 s", "4 min", "2 h", "5 d"), or "-"."""
    if when is None:
        return "-"
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


@dataclass(frozen=True, slots=True)
class Sample:
    """Job counts by state at one moment (a point of the chart)."""

    at: float
    counts: Mapping[str, int]


_PAD = 4

_COLOURS = {
    "queued": "#1f6feb",
    "running": "#8250df",
    "retrying": "#bf8700",
    "dead": "#cf222e",
    "succeeded": "#1a7f37",
}


@dataclass(frozen=True, slots=True)
class Line:
    """One state's line on the chart."""

    state: str
    colour: str
    points: str
    last: int


def chart(samples: Sequence[Sample], width: int = 600, height: int = 120) -> list[Line]:
    """Polylines (SVG ``points``) of the counts by state over the samples' span."""
    if len(samples) < 2:
        return []
    start, span = samples[0].at, (samples[-1].at - samples[0].at) or 1.0
    top = max((max(s.counts.values(), default=0) for s in samples), default=0) or 1
    inner = height - 2 * _PAD  # the stroke of a line at 0 or at the top stays inside
    lines = []
    for state, colour in _COLOURS.items():
        points = " ".join(
            f"{(s.at - start) / span * width:.1f},"
            f"{_PAD + inner - s.counts.get(state, 0) / top * inner:.1f}"
            for s in samples
        )
        lines.append(Line(state, colour, points, samples[-1].counts.get(state, 0)))
    return lines
