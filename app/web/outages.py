"""What the app answers while PostgreSQL, Redis or local storage is away.

Policy (README "Production"): a worker keeps answering predictions from what it
already holds — the routing snapshot, loaded models, verified API keys — while
PostgreSQL is unreachable; anything that needs the database answers 503 with
``Retry-After``. While Redis is unreachable, ``MODELDOCK_REDIS_OUTAGE=degrade``
(default) keeps serving with per-worker rate limits and no prediction cache;
``refuse`` answers 503 on rate-limited routes instead. Both recover on their own:
the connection pool pings before use and the rate limiter re-checks Redis.
When the disk that spools uploads (``TMPDIR``, else the system temp folder) is
full, a request answers 507
``insufficient_storage``; when it is read-only, 503 ``storage_unavailable``. The
transaction is rolled back either way: nothing is stored half-written.
"""

from __future__ import annotations

import errno
import logging
import os
from tempfile import SpooledTemporaryFile

import redis
from flask import Flask, Request, g, jsonify, make_response
from limits.errors import StorageError
from sqlalchemy.exc import InterfaceError, OperationalError

from app.extensions import db
from app.web.errors import APIError, render_error, wants_json

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
SPOOL_IN_MEMORY = 500 * 1024  # werkzeug's default: larger form files go to disk


class SpoolingRequest(Request):
    """Spools large uploads in ``TMPDIR`` itself: Python's temp folder silently falls
    back to /tmp when ``TMPDIR`` is full or read-only at first use; here that is
    reported (507/503) instead."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        folder = os.environ.get("TMPDIR") or None
        return SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="rb+", dir=folder)


def unavailable(code: str, message: str, status: int = 503):
    """A 503 (or 507) response (JSON on API paths, HTML elsewhere) with Retry-After."""
    g.log_error_code = code
    if wants_json():
        response = make_response(
            jsonify(APIError(status, code, message).to_dict()), status
        )
    else:
        response = make_response(render_error(status, message + ". Try again soon."))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register(app: Flask) -> None:
    """Install the 503 handlers (more specific than the catch-all 500 handler)."""

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(error):
        log.warning("database unavailable: %s", error.orig or error)
        try:
            db.session.rollback()
        except Exception:  # the connection is already gone
            db.session.remove()
        return unavailable(
            "database_unavailable",
            "the database is unreachable; predictions from models "
            "already loaded keep working",
        )

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(StorageError)
    def redis_unavailable(error):
        log.warning("redis unavailable: %s", error)
        return unavailable("redis_unavailable", "the rate-limit store is unreachable")

    @app.errorhandler(OSError)
    def storage_unavailable(error: OSError):
        if error.errno not in DISK_FULL and error.errno != errno.EROFS:
            return app.error_handler_spec[None][None][Exception](error)
        log.error("local storage refused a write: %s", error)
        db.session.rollback()
        if error.errno == errno.EROFS:
            return unavailable(
                "storage_unavailable",
                "the server's storage is read-only; nothing was stored",
            )
        return unavailable(
            "insufficient_storage", "the server's disk is full; nothing was stored", 507
        )
