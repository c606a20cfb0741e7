"""JSON error answers in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``.

Every failure a client can cause maps to one status: a refused emotion or duration field 400, unknown
voice 404 (the body lists the loaded voices), unspeakable or malformed input 422, input over the limit
413, missing or wrong API key 401, full queue or stopped worker 503, request timeout 504. Anything
else is a server bug: 500 with a generic message, its traceback only in the server log.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from indextts.errors import (
    IndexTTSError,
    TextError,
    TextTooLongError,
    VoiceNotFoundError,
)
from indextts.serving.worker import QueueFullError, WorkerStoppedError


class RequestTimeoutError(IndexTTSError):
    """The request did not finish within the server's per-request time limit."""


class InputTooLongError(IndexTTSError):
    """The input has more characters than the server accepts in one request."""


class BadRequestError(IndexTTSError):
    """A request field is invalid; ``param`` names it."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class InvalidFieldError(BadRequestError):
    """A request field has a value the server refuses before queueing (emotion fields); answers 400."""


# (error class, HTTP status, error code, request field it concerns); subclasses before their bases.
_ERROR_TABLE = (
    (VoiceNotFoundError, 404, "voice_not_found", "voice"),
    (InputTooLongError, 413, "input_too_long", "input"),
    (TextTooLongError, 413, "input_too_long", "input"),
    (TextError, 422, "unspeakable_input", "input"),
    (InvalidFieldError, 400, "invalid_value", None),
    (BadRequestError, 422, "invalid_request", None),
    (QueueFullError, 503, "server_busy", None),
    (WorkerStoppedError, 503, "server_stopping", None),
    (RequestTimeoutError, 504, "timeout", None),
    (IndexTTSError, 422, "invalid_request", None),
)


def error_body(status: int, message: str, code: str, param: str | None, **extra) -> JSONResponse:
    """A JSON error answer; ``extra`` fields go inside ``error`` (e.g. ``voices``)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "code": code, "param": param, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _voice_message(error: VoiceNotFoundError, voices: list[str]) -> str:
    """The 404 message in the request's terms (its ``voice`` field), not the command line's."""
    if error.matches:
        return (f"Voice '{error.voice}' is ambiguous: {', '.join(error.matches)}. Set the request's 'voice' "
                "field to one of them (run:speaker).")
    loaded = ", ".join(voices) or "none"
    return (f"Unknown voice '{error.voice}'. This server's voices are: {loaded}. Set the request's 'voice' field "
            "to one of them (GET /v1/voices lists them).")


def error_response(error: Exception, voices: list[str]) -> JSONResponse:
    """The answer for ``error``; ``voices`` (loaded voice ids) is listed in 404 answers."""
    for error_class, status, code, param in _ERROR_TABLE:
        if isinstance(error, error_class):
            param = getattr(error, "param", param)
            if isinstance(error, VoiceNotFoundError):
                return error_body(status, _voice_message(error, voices), code, param, voices=voices)
            return error_body(status, str(error), code, param)
    return error_body(500, "Internal server error while synthesising; the server log has the details.",
                      "internal_error", None)


def validation_response(error: RequestValidationError) -> JSONResponse:
    """422 for a body that does not match the schema, naming every bad field."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{field or 'body'}: {item.get('msg', 'invalid')}")
    first = next(iter(error.errors()), {})
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = "Invalid request: " + "; ".join(problems) + ". See docs/serving.md for the accepted fields."
    return error_body(422, message, "invalid_request", loc[0] if loc else None)
