"""What a call can fail with: one ``ModelDockError`` hierarchy carrying the server's
JSON error (``{"error": {"code", "message", "field"}, "request_id"}``)."""

from __future__ import annotations

import builtins
from typing import Any


class ModelDockError(Exception):
    """Any failed call. ``status`` is None when no HTTP answer came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        retry_after: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.request_id = request_id
        self.attempts = attempts  # requests sent for this call, retries included
        self.retry_after = retry_after  # the server's Retry-After header, as sent

    def __str__(self) -> str:
        parts = [str(self.status)] if self.status is not None else []
        if self.code:
            parts.append(self.code)
        text = " ".join(parts + [self.message])
        if self.field:
            text += f" (field {self.field!r})"
        if self.attempts > 1:
            text += f" [gave up after {self.attempts} attempts]"
        return text


# --- no HTTP answer


class TransportError(ModelDockError):
    """The server could not be reached or did not answer."""


class ConnectionFailedError(TransportError, builtins.ConnectionError):
    """Refused, reset or dropped before an answer, on every attempt."""


class RequestTimeoutError(TransportError, builtins.TimeoutError):
    """No answer within the call's timeout (never retried: see README)."""


# --- an HTTP answer that is an error


class ClientError(ModelDockError):
    """A 4xx answer: the request itself is wrong and is never retried (429 aside)."""


class BadRequestError(ClientError):
    """400, 413, 415 or 422: the body, a value or the model file was refused."""


class AuthenticationError(ClientError):
    """401: no API key, or one the server does not know."""


class PermissionDeniedError(ClientError):
    """403: the key lacks the scope the route needs."""


class NotFoundError(ClientError):
    """404: no such model, version or route."""


class ExplainUnavailableError(NotFoundError):
    """404 from ``explain``: this server has no explain route (an older release)."""


class ConflictError(ClientError):
    """409: the model's state does not allow this now."""


class RateLimitedError(ClientError):
    """429 on every attempt: the key's rate limit did not clear in time."""


class ServerError(ModelDockError):
    """A 5xx answer (502/503/504 after every retry; other 5xx at once)."""


class UnexpectedResponseError(ModelDockError):
    """An answer the client cannot read (not JSON, a redirect, a wrong shape)."""


_BY_STATUS: dict[int, type[ModelDockError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


def error_from_response(
    status: int,
    body: Any,
    *,
    attempts: int,
    retry_after: str | None = None,
    text: str = "",
) -> ModelDockError:
    """The error for an HTTP error answer, read from the server's JSON shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message, field = (
            error.get("code"),
            error.get("message"),
            error.get("field"),
        )
    else:  # a proxy's page, or a protocol's plain {"error": "..."} shape
        code, field = None, None
        message = error if isinstance(error, str) else text[:200] or "no body"
    if 300 <= status < 400:
        kind: type[ModelDockError] = UnexpectedResponseError
    elif status >= 500:
        kind = ServerError
    else:
        kind = _BY_STATUS.get(status, ClientError)
    return kind(
        str(message),
        status=status,
        code=code,
        field=field,
        request_id=body.get("request_id") if isinstance(body, dict) else None,
        attempts=attempts,
        retry_after=retry_after,
    )
