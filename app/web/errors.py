"""One error type for the API and the app-wide handlers that render errors."""

from __future__ import annotations

import logging
import reprlib

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import db
from app.web.paths import API_PREFIXES, error_shape

log = logging.getLogger(__name__)


# What an error may quote of a client's input: a short prefix, never the whole value.
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = _QUOTE.maxlong = 40
_QUOTE.maxlevel = 2
# A backstop for messages and fields built from input without ``quote``.
MAX_MESSAGE, MAX_FIELD = 1000, 200


def quote(value) -> str:
    """``repr`` of a value a client sent, shortened: 'abc...xyz' for long text."""
    return _QUOTE.repr(value)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


class APIError(Exception):
    """A client-visible error with a stable ``code`` and the offending ``field``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        message = clip(message, MAX_MESSAGE)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = None if field is None else clip(field, MAX_FIELD)

    def to_dict(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        body = {"error": error}
        request_id = getattr(g, "request_id", None)
        if request_id:
            body["request_id"] = request_id
        return body


def wants_json() -> bool:
    """True when the request came to an API path (``app.web.paths``) or asked for
    JSON."""
    if request.path.startswith(API_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def unmatched_protocol_answer():
    """For a URL under a protocol prefix that matched no route, the protocol's error
    answer (``plain_error`` or ``mlflow_error``), else None (the protocols'
    blueprints answer their matched routes' errors in their own shape themselves)."""
    if request.url_rule is not None:
        return None
    return PROTOCOL_ERRORS.get(error_shape(request.path))


# Stable codes for the HTTP errors Flask and its extensions raise themselves.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def register_errorhandlers(app: Flask) -> None:
    """Install the handlers: JSON on API paths, HTML pages elsewhere."""

    @app.errorhandler(APIError)
    def handle_api_error(error: APIError):
        g.log_error_code = error.code
        answer = unmatched_protocol_answer()
        if answer is not None:
            return answer(error.message, error.status, code=error.code)
        if wants_json():
            return jsonify(error.to_dict()), error.status
        return render_error(error.status, error.message)

    @app.errorhandler(CSRFError)
    def handle_csrf_error(error: CSRFError):
        # A missing or stale token means the post did not come from our form.
        message = f"The form was refused: {error.description}"
        if wants_json():
            return jsonify(APIError(403, "csrf_failed", message).to_dict()), 403
        return render_error(403, message + " Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        status = error.code or 500
        code = getattr(error, "api_code", None) or HTTP_CODES.get(status, "http_error")
        answer = unmatched_protocol_answer()
        if answer is not None:
            message = error.description or error.name
            return answer(message, status, error.get_headers(), code=code)
        if wants_json():
            api_error = APIError(
                status,
                code,
                error.description or error.name,
                getattr(error, "field", None),
            )
            response = jsonify(api_error.to_dict())
            response.status_code = status
            for name, value in error.get_headers():
                if name.lower() not in {"content-type", "content-length"}:
                    response.headers[name] = value
            return response
        page, status = render_error(status, error.description or error.name)
        headers = [
            (k, v)
            for k, v in error.get_headers()
            if k.lower() not in {"content-type", "content-length"}
        ]
        return page, status, headers

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "Internal error; it has been logged."
        if wants_json():
            return jsonify(APIError(500, "internal_error", message).to_dict()), 500
        return render_error(500, message)


def _with_headers(response, status: int, headers):
    response.status_code = status
    for name, value in headers or ():
        if name.lower() not in {"content-type", "content-length"}:
            response.headers[name] = value
    return response


def plain_error(
    message: str,
    status: int,
    headers=None,
    code: str | None = None,
    field: str | None = None,
):
    """The protocols' error body, ``{"error": message}``, keeping headers such as
    Retry-After (ModelDock's own ``code`` and ``field`` have no place in it)."""
    return _with_headers(jsonify({"error": message}), status, headers)


# MLflow's error codes (mlflow.protos.databricks_pb2) for ModelDock's statuses, as
# mlflow.exceptions maps them the other way; 404 for a URL is ENDPOINT_NOT_FOUND.
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def mlflow_error(
    message: str,
    status: int,
    headers=None,
    code: str | None = None,
    field: str | None = None,
    error_code: str | None = None,
):
    """MLflow's error body, ``{"error_code": "BAD_REQUEST", "message": ...}`` (what
    ``MlflowException.serialize_as_json`` writes and MLflow's client reads), plus
    ModelDock's own ``error.code`` and ``error.field`` beside them."""
    code = code or HTTP_CODES.get(status, "http_error")
    if error_code is None:
        if code == "not_found":  # no such URL, rather than no such model
            error_code = "ENDPOINT_NOT_FOUND"
        else:
            error_code = MLFLOW_CODES.get(
                status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"
            )
    body = {"error_code": error_code, "message": message}
    own = {"code": code}
    if field is not None:
        own["field"] = field
    body["error"] = own
    return _with_headers(jsonify(body), status, headers)


PROTOCOL_ERRORS = {"plain": plain_error, "mlflow": mlflow_error}


def render_error(status: int, message: str):
    """Render the HTML error page."""
    return render_template("errors/error.html", status=status, message=message), status
