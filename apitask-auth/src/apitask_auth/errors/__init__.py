"""GoTrue's errors: what a handler raises, and how the client is answered.

* :mod:`.codes`: :class:`ErrorCode`, every ``error_code`` the service answers with.
* :mod:`.api_error`: :class:`APIError` and its constructors, one per HTTP status
  (``bad_request``, ``forbidden``, ...), in the style of GoTrue's apierrors.
* :mod:`.responses`: the two response formats (§1.2), the exception handlers
  and the 500 log line.

Import from here: ``from apitask_auth.errors import ErrorCode, bad_request``.
"""

from __future__ import annotations

from apitask_auth.errors.api_error import (
    APIError,
    bad_request,
    forbidden,
    internal,
    not_found,
    too_many_requests,
    unauthorized,
    unprocessable,
)
from apitask_auth.errors.codes import ErrorCode
from apitask_auth.errors.responses import (
    API_VERSION,
    BodyTooLargeError,
    error_response,
    install_error_handlers,
    log_failure,
    uses_new_format,
)

__all__ = [
    "API_VERSION",
    "APIError",
    "BodyTooLargeError",
    "ErrorCode",
    "bad_request",
    "error_response",
    "forbidden",
    "install_error_handlers",
    "internal",
    "log_failure",
    "not_found",
    "too_many_requests",
    "unauthorized",
    "unprocessable",
    "uses_new_format",
]
