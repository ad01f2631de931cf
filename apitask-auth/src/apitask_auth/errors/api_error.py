"""The error a handler raises, and one constructor per HTTP status, as GoTrue's apierrors.

``raise bad_request(ErrorCode.VALIDATION_FAILED, "Signup requires a valid password")``
reads as GoTrue's ``NewBadRequestError(ErrorCodeValidationFailed, ...)``: the
status is in the constructor's name, the code is an :class:`ErrorCode`. A
status with no constructor here (413, 431: the edge's) builds :class:`APIError`
itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apitask_auth.errors.codes import ErrorCode

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "APIError",
    "bad_request",
    "forbidden",
    "internal",
    "not_found",
    "too_many_requests",
    "unauthorized",
    "unprocessable",
]


class APIError(Exception):
    """An error answered to the client, with GoTrue's status, code and message.

    Attributes:
        status: the HTTP status.
        code: GoTrue's error code.
        message: the text the client reads.
        extra: more keys for the body (``weak_password`` carries its reasons).
        internal_error: why it happened, for the log only, never for the client
            (GoTrue's ``WithInternalError``): an exception or a text. A 5xx's
            log line shows it, or else the exception this one was raised from.
    """

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        internal_error: BaseException | str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.internal_error = internal_error

    def with_internal_error(self, cause: BaseException | str) -> Self:
        """Set :attr:`internal_error` and return this error, for ``raise ...`` in one line."""
        self.internal_error = cause
        return self


def bad_request(code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None) -> APIError:
    """400: the request itself is wrong (GoTrue's ``NewBadRequestError``)."""
    return APIError(400, code, message, extra=extra)


def unauthorized(code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None) -> APIError:
    """401: no credentials where they are needed."""
    return APIError(401, code, message, extra=extra)


def forbidden(code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None) -> APIError:
    """403: the caller may not (GoTrue's ``NewForbiddenError``)."""
    return APIError(403, code, message, extra=extra)


def not_found(code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None) -> APIError:
    """404: what the request names does not exist (GoTrue's ``NewNotFoundError``)."""
    return APIError(404, code, message, extra=extra)


def unprocessable(
    code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None
) -> APIError:
    """422: well-formed, but the state refuses it (GoTrue's ``NewUnprocessableEntityError``)."""
    return APIError(422, code, message, extra=extra)


def too_many_requests(
    code: ErrorCode, message: str, *, extra: dict[str, Any] | None = None
) -> APIError:
    """429: a rate limit is spent (GoTrue's ``NewTooManyRequestsError``)."""
    return APIError(429, code, message, extra=extra)


def internal(message: str) -> APIError:
    """500 ``unexpected_failure`` (GoTrue's ``NewInternalServerError``).

    Chain :meth:`APIError.with_internal_error` to say why in the log.
    """
    return APIError(500, ErrorCode.UNEXPECTED_FAILURE, message)
