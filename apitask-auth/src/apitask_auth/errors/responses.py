"""GoTrue's error responses, in both formats (§1.2).

Handlers raise :class:`~apitask_auth.errors.api_error.APIError`; the exception
handlers here turn it, and anything else that escapes, into GoTrue's JSON. The
format is picked by the ``X-Supabase-Api-Version`` request header: from
``2024-01-01`` on, the body is ``{"code": "<error_code>", "message": ...}`` and
the header is echoed; before that (or without it) the legacy
``{"code": <status>, "error_code", "msg"}``.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest

from apitask.mail import redact_addresses
from apitask_auth.errors.api_error import APIError, bad_request, internal
from apitask_auth.errors.codes import ErrorCode

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_VERSION",
    "BodyTooLargeError",
    "error_response",
    "install_error_handlers",
    "log_failure",
    "uses_new_format",
]

logger = logging.getLogger("apitask_auth")

API_VERSION = "2024-01-01"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BodyTooLargeError(HTTPException):
    """The request body passed the 1 MiB limit (raised while it is being read)."""

    def __init__(self) -> None:
        super().__init__(413, "Request body too large")


def uses_new_format(request: Request) -> bool:
    """Whether the client asked for the 2024-01-01 error format."""
    version = request.headers.get("x-supabase-api-version", "").strip()
    return bool(_DATE.match(version)) and version >= API_VERSION


def error_response(request: Request, error: APIError) -> JSONResponse:
    """The JSON response for ``error`` in the format the request asked for."""
    headers: dict[str, str] = {"x-sb-error-code": error.code}
    body: dict[str, Any]
    if uses_new_format(request):
        headers["x-supabase-api-version"] = API_VERSION
        body = {"code": error.code, "message": error.message}
    else:
        body = {"code": error.status, "error_code": error.code, "msg": error.message}
        if error.status >= 500:
            body["error_id"] = request.headers.get("x-request-id", "")
    body.update(error.extra)
    return JSONResponse(body, status_code=error.status, headers=headers)


_HTTP_CODES = {
    400: ErrorCode.BAD_JSON,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.REQUEST_ENTITY_TOO_LARGE,
}


def log_failure(request: StarletteRequest, cause: BaseException | str, what: str) -> None:
    """Log why a request got a 500, at ERROR: the cause's type, message and traceback,
    or the cause as given when it is a text.

    Addresses in the text lose their local part. (SQL statement parameters,
    which carry addresses and token hashes, never reach a message: the engine
    hides them.)
    """
    text = cause if isinstance(cause, str) else "".join(traceback.format_exception(cause))
    logger.error(
        "%s on %s %s: %s",
        what,
        request.method,
        request.url.path,
        redact_addresses(text.rstrip()),  # the library's one rule: the domain stays
    )


async def _answer_api_error(request: Request, exc: Exception) -> Response:
    """The handler for :class:`APIError`: a 5xx is logged with its cause first."""
    assert isinstance(exc, APIError)
    if exc.status >= 500:
        # "Error sending ... email" and the like: the response says little, the log says why.
        cause = exc.internal_error if exc.internal_error is not None else exc.__cause__ or exc
        log_failure(request, cause, exc.message)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.UNKNOWN)
    return error_response(request, APIError(exc.status_code, code, str(exc.detail)))


async def _validation_error(request: Request, exc: Exception) -> Response:
    # Go's JSON decoder rejects a malformed body and a field of the wrong type
    # alike, with 400 bad_json; FastAPI reports both as validation errors.
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        details.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    message = "Could not parse request body as JSON: " + "; ".join(details)
    return error_response(request, bad_request(ErrorCode.BAD_JSON, message))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log_failure(request, exc, "unhandled error")
    return error_response(
        request, internal("Unexpected failure, please check server logs for more information")
    )


class _AnswerUnexpected:
    """Answer an error no handler took with GoTrue's 500, and keep the connection.

    Starlette's last-resort handler answers too, but then re-raises so that the
    server logs the error, and uvicorn closes the connection on it: a keep-alive
    client's next request, already sent on that connection, is never answered.
    Here the error is logged and answered, and goes no further.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:  # half a response is out: only the server can end it
                raise
            response = await _unexpected(StarletteRequest(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, including unhandled ones, in GoTrue's format.

    Call before adding middleware: the catch-all for unexpected errors is
    then the innermost, and the others (response-time matching, metrics) see
    its 500 like any response. Errors of those outer middlewares still reach
    Starlette's handler.
    """
    app.add_exception_handler(APIError, _answer_api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(_AnswerUnexpected)
