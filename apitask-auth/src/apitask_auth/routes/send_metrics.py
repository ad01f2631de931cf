"""The send counters of /metrics: one shape for mail, texts and hook calls.

Each kind of message has three counters: handed over (after the rate limits,
in the request), attempts that failed (in the request or the background, so a
retried send counts once per failed attempt), and delivered. Mail uses
GoTrue's names for the first two (§4.8); GoTrue counts neither texts nor hook
calls, so theirs are ours (docs/metrics.md):

* ``apitask_sms_send_operations`` / ``_send_errors`` / ``apitask_sms_sent``,
  label ``purpose`` (``otp``: sign-in, confirmation, phone change; ``mfa``);
* ``apitask_hook_send_operations`` / ``_send_errors`` / ``apitask_hook_sent``,
  label ``hook`` (``send-email``, ``send-sms``): calls of GoTrue's send hooks,
  which replace the mailer or the SMS provider when they are on.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from apitask import Outcome, TaskCounters
from apitask.webhooks import webhook_counters
from apitask_auth.delivery.sms.task import sms_counters

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.metrics_core import Metric

__all__ = ["SendCounters", "SendMetrics", "send_families"]


@dataclass(frozen=True)
class SendCounters:
    """What one kind of message's counters are named and read from.

    ``operations`` are the app's own (one per chain or hook); ``outcomes`` the
    process's, counted by the tasks wherever they run.
    """

    operations_name: str
    errors_name: str
    sent_name: str
    label: str
    what: str
    operations: tuple[TaskCounters, ...]
    outcomes: TaskCounters


def send_families(counters: SendCounters) -> Iterator[Metric]:
    """The three counter families of ``counters``."""
    label = [counters.label]
    handed = CounterMetricFamily(
        counters.operations_name,
        f"{counters.what} handed over for sending, after the rate limits.",
        labels=label,
    )
    totals: dict[str, int] = {}
    for operations in counters.operations:
        for key, outcomes in operations.snapshot().items():
            totals[key] = totals.get(key, 0) + outcomes.get(Outcome.SUBMITTED, 0)
    for key, count in totals.items():
        handed.add_metric([key], count)
    errors = CounterMetricFamily(
        counters.errors_name,
        f"{counters.what}: send attempts that failed, in the request or the background.",
        labels=label,
    )
    sent = CounterMetricFamily(counters.sent_name, f"{counters.what} delivered.", labels=label)
    for key, outcomes in counters.outcomes.snapshot().items():
        errors.add_metric([key], outcomes.get(Outcome.FAILED, 0))
        sent.add_metric([key], outcomes.get(Outcome.SUCCEEDED, 0))
    yield from (handed, errors, sent)


class SendMetrics(Collector):
    """Texts and hook calls, counted as mail is (see the module docstring).

    Args:
        texts: the SMS chain's operation counters (none without a chain).
        hooks: the operation counters of each enabled send hook.
    """

    def __init__(
        self,
        texts: Iterable[TaskCounters] = (),
        hooks: Iterable[TaskCounters] = (),
        *,
        text_outcomes: TaskCounters = sms_counters,
        hook_outcomes: TaskCounters = webhook_counters,
    ) -> None:
        self.texts = SendCounters(
            "apitask_sms_send_operations",
            "apitask_sms_send_errors",
            "apitask_sms_sent",
            "purpose",
            "Text messages",
            tuple(texts),
            text_outcomes,
        )
        self.hooks = SendCounters(
            "apitask_hook_send_operations",
            "apitask_hook_send_errors",
            "apitask_hook_sent",
            "hook",
            "Send-hook calls",
            tuple(hooks),
            hook_outcomes,
        )

    def collect(self) -> Iterator[Metric]:
        """Render the text and hook counters (called on a scrape)."""
        yield from send_families(self.texts)
        yield from send_families(self.hooks)
