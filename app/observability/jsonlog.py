"""JSON logs: one JSON object per line, with the request id when there is one."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson
from flask import g, has_request_context
from gunicorn.glogging import Logger as GunicornBaseLogger

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JSONFormatter(logging.Formatter):
    """Format a record as JSON: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def current_request_id() -> str | None:
    """The id of the request being handled, if any."""
    if has_request_context():
        return g.get("request_id")
    return None


class _Marker(logging.StreamHandler):
    """Our stderr handler, recognisable so that configuring twice adds nothing."""


def configure(level: str, fmt: str) -> None:
    """Send the root logger to stderr as JSON (or text), once per process.

    Like ``logging.basicConfig`` it leaves a root logger that already has other
    handlers alone (pytest's capture, an embedding application).
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    ours = [h for h in root.handlers if isinstance(h, _Marker)]
    if root.handlers and not ours:
        return
    handler = ours[0] if ours else _Marker(sys.stderr)
    handler.setFormatter(
        JSONFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    if not ours:
        root.addHandler(handler)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with JSON lines: error log as above, access log with fields."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JSONFormatter())

    def access(self, resp, req, environ, request_time):
        """One JSON line per request, its fields read straight from the environ and
        the response: gunicorn's ``atoms()`` also formats a timestamp and every
        request and response header, which made up a third of this line's cost
        (the access log was 14 % of a worker's Python time; benchmarks/profile.py)."""
        if not self.access_log_enabled:
            return
        request_id = None
        for name, value in resp.headers:
            if name.lower() == "x-request-id":
                request_id = value
                break
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        status = resp.status_code or 0
        self.access_log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "bytes": resp.sent or 0,
                "duration_ms": round(request_time.total_seconds() * 1000.0, 3),
                # gunicorn listens on loopback only, so the peer is nginx and
                # X-Forwarded-For (set by nginx to the client address) is true.
                "client": environ.get("HTTP_X_FORWARDED_FOR")
                or environ.get("REMOTE_ADDR", "-"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                "pid": os.getpid(),
            },
        )
