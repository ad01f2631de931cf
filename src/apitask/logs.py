"""JSON log lines that carry the request id into every task the request started.

Standard library only::

    import logging
    from apitask.logs import JSONFormatter, RequestIdFilter

    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestIdFilter())   # on the handler: it sees every record
    logging.basicConfig(level=logging.INFO, handlers=[handler])

Each record gets ``request_id``: the current request scope's, or, in a task
a :class:`~apitask.WorkerPool` runs, the id of the request that submitted
it (the pool carries the id, never the scope). Each line is one JSON object:
``time``, ``level``, ``logger``, ``message``, ``request_id``, ``task_type``
when known, ``exception`` when there is one, and the record's other extra
fields (``mail_type``, ``attempt``...).

:func:`current_request_id` is here too, where it was first published; it
lives in the core (:func:`apitask.current_request_id`) because a request id
is not a logging concern: the middleware gives it, the scope and the pool
carry it, the outbox stores it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from ._request_id import current_request_id

__all__ = ["JSONFormatter", "RequestIdFilter", "current_request_id"]

# Attributes every LogRecord has; anything else came from ``extra=``.
# (uvicorn adds ``color_message``: the message again, with terminal colours.)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_FIRST = ("time", "level", "logger", "message", "request_id", "task_type")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to each record (None outside a request); never drops one.

    A ``request_id`` the caller passed in ``extra`` is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.request_id`` unless it is set already."""
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line, keys in a fixed order (see the module docstring).

    ``time`` is ISO 8601 in UTC with milliseconds; ``level`` is lower case
    (``"error"``), as logrus writes it. Values JSON cannot hold are written
    with ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        task_type = getattr(record, "task_type", None)
        if task_type is not None:
            line["task_type"] = task_type
        line.update(
            {
                name: value
                for name, value in record.__dict__.items()
                if name not in _STANDARD and name not in _FIRST
            }
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)
