"""Standard serving protocols: TensorFlow Serving REST and Open Inference (KServe v2).

Both answer errors in their own shape, ``{"error": "<message>"}``, with the status
ModelDock would give; ``plain_errors`` installs that on a protocol blueprint.
"""

from __future__ import annotations

import logging

from flask import Blueprint, g
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from app.web.errors import APIError, plain_error
from app.registry.service import NAME_PATTERN

LABEL_PATTERN = "[a-z][a-z0-9_-]{0,15}"  # aliases are at most 16 characters

log = logging.getLogger(__name__)


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

    @bp.errorhandler(APIError)
    def api_error(error: APIError):
        g.log_error_code = error.code
        return plain_error(describe(error), error.status)

    @bp.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return plain_error(error.description or error.name, error.code or 500,
                           error.get_headers())

    @bp.errorhandler(OperationalError)
    def database_down(error: OperationalError):
        from app.extensions import db

        db.session.rollback()
        log.warning("database unavailable: %s", error.orig)
        g.log_error_code = "database_unavailable"
        return plain_error("the database is unavailable", 503, [("Retry-After", "5")])

    @bp.errorhandler(Exception)
    def unexpected(error: Exception):
        from app.extensions import db

        db.session.rollback()
        log.exception("unhandled error on a protocol route")
        g.log_error_code = "internal_error"
        return plain_error("Internal error; it has been logged.", 500)
