"""What the standard protocols (TensorFlow Serving REST, Open Inference, MLflow) share.

Each answers errors in its own shape with the status ModelDock would give:
``protocol_errors`` installs one on a protocol blueprint (``plain_errors``: TF
Serving's and Open Inference's ``{"error": "<message>"}``). TF Serving and v2 both
see a model as one input tensor of features and a ``predict`` output whose
datatype follows the classes; TF Serving's ``name:verb`` URLs need converters that
keep ``:`` out of names and labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from app.extensions import db
from app.registry.service import LABEL_PATTERN, NAME_PATTERN
from app.web.errors import HTTP_CODES, APIError, plain_error

log = logging.getLogger(__name__)

# The one input tensor a model declares; a lone tensor may carry any name.
INPUT_NAME = "input"


class ModelNameConverter(BaseConverter):
    """``<model:name>``: a valid model name, so ``x:predict`` is never taken for one."""

    regex = NAME_PATTERN.pattern.strip("^$")


class LabelConverter(BaseConverter):
    """``<label:label>``: an alias name such as ``stable`` or ``canary`` (no ``:``)."""

    regex = LABEL_PATTERN


def describe(error: APIError) -> str:
    """The message, prefixed with the offending field for input errors."""
    if error.field and error.status in (400, 413):
        return f"{error.field}: {error.message}"
    return error.message


def plain_errors(bp: Blueprint) -> None:
    """Answer every error on ``bp``'s routes (services' too) in the plain shape."""
    protocol_errors(bp, plain_error)


def protocol_errors(bp: Blueprint, answer: Callable[..., Response]) -> None:
    """Answer every error on ``bp``'s routes (services' too) with ``answer(message,
    status, headers, code=..., field=...)``: a protocol's own error body."""

    @bp.errorhandler(APIError)
    def api_error(error: APIError):
        g.log_error_code = error.code
        return answer(describe(error), error.status, code=error.code, field=error.field)

    @bp.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        return answer(
            error.description or error.name,
            status,
            error.get_headers(),
            code=getattr(error, "api_code", None) or HTTP_CODES.get(status),
        )

    @bp.errorhandler(OperationalError)
    def database_down(error: OperationalError):
        db.session.rollback()
        log.warning("database unavailable: %s", error.orig)
        g.log_error_code = "database_unavailable"
        return answer(
            "the database is unavailable",
            503,
            [("Retry-After", "5")],
            code="database_unavailable",
        )

    @bp.errorhandler(Exception)
    def unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on a protocol route")
        g.log_error_code = "internal_error"
        return answer("Internal error; it has been logged.", 500, code="internal_error")


# --- tensor conventions of TF Serving and Open Inference


def flatten(value: Any, limit: int) -> list:
    """Return a nested list's scalars in row-major order (at most ``limit`` + 1)."""
    if not isinstance(value, list):
        return [value]
    out: list = []
    stack = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
            if len(out) > limit:
                return out
        else:
            stack.pop()
    return out


def label_datatype(schema: dict) -> str:
    """The datatype of the ``predict`` output, from the classes recorded at upload."""
    classes = schema.get("classes")
    if schema.get("task") != "classification" or not classes:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"
