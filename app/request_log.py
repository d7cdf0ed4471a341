"""Request logs written in batches by a background thread, never on the request path."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy import insert, update

from app.extensions import db
from app.models import ApiKey, RequestLog
from app.models._time import utcnow

log = logging.getLogger(__name__)
BATCH = 500


class RequestLogWriter:
    """Queues log rows; a daemon thread inserts them and updates key usage in batches."""

    def __init__(self, app: Flask, flush_seconds: float, enabled: bool = True):
        self.app = app
        self.flush_seconds = flush_seconds
        self.enabled = enabled
        self.queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one row; start the writer thread in this process on first use."""
        self.queue.put(row)
        if self._pid != os.getpid() and self.flush_seconds > 0:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()  # after a fork the parent's thread is gone
            threading.Thread(target=self._run, name="request-log", daemon=True).start()
            atexit.register(self.flush)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # keep logging alive if the database blips
                log.exception("request log flush failed; will retry")

    def depth(self) -> int:
        return self.queue.qsize()

    def flush(self) -> int:
        """Write everything queued so far; return the number of rows written."""
        rows: list[dict[str, Any]] = []
        while True:
            try:
                rows.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return 0
        with self.app.app_context():
            try:
                for start in range(0, len(rows), BATCH):
                    db.session.execute(insert(RequestLog), rows[start:start + BATCH])
                _update_key_usage(rows)
                db.session.commit()
            except Exception:
                db.session.rollback()
                for row in rows:  # put them back for the next attempt
                    self.queue.put(row)
                raise
            finally:
                db.session.remove()
        return len(rows)


def _update_key_usage(rows: list[dict[str, Any]]) -> None:
    usage: dict[int, list] = defaultdict(lambda: [0, None])
    for row in rows:
        key_id = row.get("api_key_id")
        if key_id is not None:
            entry = usage[key_id]
            entry[0] += 1
            entry[1] = max(entry[1] or row["created_at"], row["created_at"])
    for key_id, (count, last) in usage.items():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(
            use_count=ApiKey.use_count + count, last_used_at=last))


def writer() -> RequestLogWriter:
    return current_app.extensions["modeldock.request_log"]


def record_response(protocol: str):
    """Return an ``after_request`` hook that logs the request under ``protocol``."""

    def after(response):
        log_writer = writer()
        if request.method != "POST" or not log_writer.enabled:
            return response  # metadata reads are not prediction requests
        principal = g.get("principal")
        created: datetime = utcnow()
        log_writer.submit({
            "created_at": created,
            "request_id": g.get("request_id", ""),
            "protocol": g.get("log_protocol", protocol),
            "model_name": g.get("log_model"),
            "version": g.get("log_version"),
            "api_key_id": principal.api_key_id if principal else None,
            "user_id": principal.user_id if principal else None,
            "status_code": response.status_code,
            "error_code": g.get("log_error_code"),
            "rows": g.get("log_rows", 0),
            "latency_ms": (time.perf_counter() - g.get("started", time.perf_counter()))
            * 1000.0,
            "remote_addr": request.remote_addr,
        })
        return response

    return after


def init_app(app: Flask) -> None:
    app.extensions["modeldock.request_log"] = RequestLogWriter(
        app, app.config["MODELDOCK_REQUEST_LOG_FLUSH_SECONDS"],
        app.config["MODELDOCK_REQUEST_LOG_ENABLED"])
