"""What the app answers while PostgreSQL or Redis is away: 503 with Retry-After.

Policy (README "Production"): a worker keeps answering predictions from what it
already holds — the routing snapshot, loaded models, verified API keys — while
PostgreSQL is unreachable; anything that needs the database answers 503 with
``Retry-After``. While Redis is unreachable, ``MODELDOCK_REDIS_OUTAGE=degrade``
(default) keeps serving with per-worker rate limits and no prediction cache;
``refuse`` answers 503 on rate-limited routes instead. Both recover on their own:
the connection pool pings before use and the rate limiter re-checks Redis.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, g, jsonify, make_response
from limits.errors import StorageError
from sqlalchemy.exc import InterfaceError, OperationalError

from app.errors import APIError, render_error, wants_json

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


def unavailable(code: str, message: str):
    """A 503 response (JSON on API paths, HTML elsewhere) with Retry-After."""
    g.log_error_code = code
    if wants_json():
        response = make_response(jsonify(APIError(503, code, message).to_dict()), 503)
    else:
        response = make_response(render_error(503, message + ". Try again soon."))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register(app: Flask) -> None:
    """Install the 503 handlers (more specific than the catch-all 500 handler)."""

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(error):
        from app.extensions import db

        log.warning("database unavailable: %s", error.orig or error)
        try:
            db.session.rollback()
        except Exception:  # the connection is already gone
            db.session.remove()
        return unavailable("database_unavailable",
                           "the database is unreachable; predictions from models "
                           "already loaded keep working")

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(StorageError)
    def redis_unavailable(error):
        log.warning("redis unavailable: %s", error)
        return unavailable("redis_unavailable",
                           "the rate-limit store is unreachable")
