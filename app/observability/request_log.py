"""Request logs written in batches by a background thread, never on the request path.

A blueprint logs its predictions with
``bp.after_request(record_response("<protocol>"))``; views leave what to log in
``g``: ``log_model``, ``log_version``, ``log_schema`` and ``log_rows`` (set by
``predict.resolve`` and ``run``), ``log_predictions`` (what ``run`` answered, kept
for joining with feedback) and ``log_payload`` (the parsed body). The same hook
counts the request in the Prometheus metrics, with or without logging. Every row,
whatever wrote it (the hook, a CSV job), is built by ``log_row``, so one batch always
has one shape.

What can be lost: a batch the database refuses is retried row by row and only the
rows it still refuses are set aside (logged, counted in
``modeldock_request_log_refused_total``); while the database is unreachable the
rows stay queued (up to ``MAX_QUEUED``) and are written when it is back; a graceful
stop or a HUP writes the queue before the worker exits. A worker killed with
``kill -9`` loses the rows queued since its last flush.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from flask import Flask, current_app, g, request
from sqlalchemy import delete, exc, update

from app.extensions import db
from app.models import ApiKey, RequestLog
from app.models._time import utcnow
from app.observability import metrics
from app.observability.background import BackgroundFlush
from app.observability.privacy import stored_payload, truncate_ip
from app.web.finite_json import JSONText, json_text

log = logging.getLogger(__name__)
# Rows per INSERT statement (SQLite, MariaDB), and per stretch of COPY, between which
# the writer lets go of the GIL. The writer shares its worker's GIL with the
# requests it logs: a request that waits for the GIL waits until the holder lets go
# or for the interpreter's switch interval (5 ms). Flushing a second's rows in one
# go (about 30 ms of Python on SQLite) made requests wait 5 ms about once per
# flush, which was the whole p99 at one connection; a batch of 20 holds it <1 ms.
BATCH = 20
# Rows kept while the database is away; beyond this the oldest are dropped (and
# counted) so that an outage cannot exhaust a worker's memory.
MAX_QUEUED = 100_000
# Rows the database refused, kept for inspection (the newest ones).
KEEP_REFUSED = 100


# Rows written per transaction (a refused one is retried row by row).
CHUNK = 5000


class DatabaseAway(Exception):
    """The database could not be reached; the rows stay queued for the next flush."""

    def __init__(self, message: str, done: int):
        super().__init__(message)
        self.done = done  # rows of the failing chunk already written or set aside


class RequestLogWriter(BackgroundFlush):
    """Queues log rows; a daemon thread inserts them and counts key use, in batches."""

    thread_name = "request-log"

    def __init__(self, app: Flask, flush_seconds: float):
        super().__init__(flush_seconds)
        self.app = app
        self.queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.refused: deque[dict[str, Any]] = deque(maxlen=KEEP_REFUSED)

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one row; start the writer thread in this process on first use."""
        self.queue.put(row)
        self.started()

    def describe_failure(self, error: BaseException, at_shutdown: bool) -> str:
        if at_shutdown:
            return (
                f"request log: {self.queue.qsize()} rows could not be written at "
                f"shutdown: {error}"
            )
        return (
            f"request log flush failed ({self.queue.qsize()} rows queued); "
            f"will retry: {error}"
        )

    def depth(self) -> int:
        return self.queue.qsize()

    def flush(self) -> int:
        """Write everything queued so far; return the number of rows written.

        Raises ``DatabaseAway`` (rows requeued) when the database is unreachable.
        """
        rows: list[dict[str, Any]] = []
        while True:
            try:
                rows.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return 0
        for row in rows:  # here, not on the request path (idempotent on a retry)
            row["remote_addr"] = truncate_ip(row["remote_addr"])
            row["predictions"] = predictions_text(row["predictions"])
        written = 0
        with self.app.app_context():
            try:
                while rows:
                    chunk = rows[:CHUNK]
                    written += self._write_chunk(chunk)
                    del rows[: len(chunk)]
            except DatabaseAway as away:
                del rows[: away.done]  # written or set aside: not again
                self._requeue(rows)
                raise
            finally:
                db.session.remove()
                metrics.LOG_QUEUE.set(self.queue.qsize())
        return written

    def _write_chunk(self, rows: list[dict[str, Any]]) -> int:
        """Write ``rows`` in one transaction; if refused, row by row, setting aside
        only the rows the database still refuses. Return how many were written."""
        try:
            _write(rows)
            return len(rows)
        except Exception as error:
            _safe_rollback()
            if _unreachable(error):
                raise DatabaseAway(str(error), 0) from error
        written = 0
        for done, row in enumerate(rows):
            try:
                _write([row])
                written += 1
            except Exception as error:
                _safe_rollback()
                if _unreachable(error):
                    raise DatabaseAway(str(error), done) from error
                self.refused.append(row)
                metrics.LOG_REFUSED.inc()
                log.error(
                    "request log: the database refused row %s (set aside): %s",
                    row.get("request_id"),
                    error,
                )
        return written

    def _requeue(self, rows: list[dict[str, Any]]) -> None:
        """Put rows back for the next attempt, keeping the newest MAX_QUEUED."""
        room = MAX_QUEUED - self.queue.qsize()
        keep = rows[-room:] if room > 0 else []
        if len(keep) < len(rows):
            metrics.LOG_DROPPED.inc(len(rows) - len(keep))
        for row in keep:
            self.queue.put(row)

    def close(self) -> int | None:
        """Stop the thread and write what is left (graceful shutdown of a worker)."""
        written = super().close()
        if written:
            log.info("request log: wrote %d rows at shutdown", written)
        return written


COLUMNS = (
    "created_at",
    "request_id",
    "protocol",
    "model_name",
    "version",
    "api_key_id",
    "user_id",
    "status_code",
    "error_code",
    "rows",
    "latency_ms",
    "remote_addr",
    "payload",
    "predictions",
)
# The JSON columns (written as JSON text by COPY).
JSON_COLUMNS = (COLUMNS.index("payload"), COLUMNS.index("predictions"))


def log_row(
    *,
    request_id: str,
    protocol: str,
    model_name: str | None,
    version: int | None,
    status_code: int,
    latency_ms: float,
    remote_addr: str | None,
    rows: int = 0,
    error_code: str | None = None,
    api_key_id: int | None = None,
    user_id: int | None = None,
    payload: Any = None,
    predictions: Any = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One request-log row with every column, the only shape the writer accepts.

    ``predictions`` is ``(labels, probabilities or None)`` as the model answered
    (arrays, made JSON off the request path) or already ``compact_predictions``'s
    shape."""
    return {
        "created_at": created_at or utcnow(),
        "request_id": request_id,
        "protocol": protocol,
        "model_name": model_name,
        "version": version,
        "api_key_id": api_key_id,
        "user_id": user_id,
        "status_code": status_code,
        "error_code": error_code,
        "rows": rows,
        "latency_ms": latency_ms,
        "remote_addr": remote_addr,
        "payload": payload,
        "predictions": predictions,
    }


def compact_predictions(predictions: Any) -> dict[str, list] | None:
    """``(labels, probabilities)`` → ``{"y": [...], "p": [[...], ...]}``, the JSON
    kept per request; probabilities rounded to 6 decimals (enough for log-loss)."""
    if predictions is None or isinstance(predictions, dict):
        return predictions
    labels, probabilities = predictions
    compact: dict[str, list] = {"y": np.asarray(labels).tolist()}
    if probabilities is not None:
        compact["p"] = np.round(np.asarray(probabilities, dtype=float), 6).tolist()
    return compact


def predictions_text(predictions: Any) -> Any:
    """``compact_predictions``'s JSON as text, written by orjson from the arrays
    themselves: the writer's form. Through ``tolist`` every row of probabilities
    was a Python list, and a second's worth of them (70,000 lists at 700 requests
    of 100 rows) set off the cyclic garbage collector in the middle of requests:
    +300 µs of worker CPU per such request and 300 ms stalls (py-spy). Text
    already (a row put back while the database was away) stays as it is."""
    if predictions is None or isinstance(predictions, dict | str):
        return predictions
    labels, probabilities = predictions
    compact = {"y": np.asarray(labels)}
    if probabilities is not None:
        compact["p"] = np.round(np.asarray(probabilities, dtype=float), 6)
    return JSONText(json_text(compact))


def _write(rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, count their API keys' use and commit, in one transaction."""
    _insert(rows)
    _update_key_usage(rows)
    db.session.commit()


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the database is away (not that it refused the rows)."""
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        return True
    if getattr(error, "connection_invalidated", False):
        return True
    dbapi = db.engine.dialect.dbapi  # COPY raises the driver's own errors
    return dbapi is not None and isinstance(
        error, (dbapi.OperationalError, dbapi.InterfaceError)
    )


def _insert(rows: list[dict[str, Any]]) -> None:
    """Insert log rows in the session's transaction: COPY on PostgreSQL.

    COPY costs a few microseconds of the worker's CPU per row against about forty
    for a multi-row INSERT, and this thread shares its worker's CPU (and GIL) with
    the requests it logs.
    """
    table = RequestLog.__table__
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        for start in range(0, len(rows), BATCH):
            if start:
                time.sleep(0)  # let a waiting request thread run (see BATCH)
            connection.execute(table.insert(), rows[start : start + BATCH])
        return
    created_at = table.c.created_at.type.process_bind_param
    dialect = connection.dialect
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for number, row in enumerate(rows, 1):
            if number % BATCH == 0:
                time.sleep(0)  # see BATCH
            values = [row.get(name) for name in COLUMNS]
            values[0] = created_at(values[0], dialect)
            for index in JSON_COLUMNS:
                if values[index] is not None:
                    values[index] = json_text(values[index])
            copy.write_row(values)


def _safe_rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone with the database
        pass


def _update_key_usage(rows: list[dict[str, Any]]) -> None:
    usage: dict[int, list] = defaultdict(lambda: [0, None])
    for row in rows:
        key_id = row.get("api_key_id")
        if key_id is not None:
            entry = usage[key_id]
            entry[0] += 1
            entry[1] = max(entry[1] or row["created_at"], row["created_at"])
    for key_id, (count, last) in usage.items():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(use_count=ApiKey.use_count + count, last_used_at=last)
        )


def writer() -> RequestLogWriter:
    return current_app.extensions["modeldock.request_log"]


def _payload() -> Any:
    body = g.get("log_payload")
    if body is None:
        return None
    schema = g.get("log_schema")  # of the version that answered
    names = schema.get("feature_names") if schema else None
    fields = frozenset(current_app.config["MODELDOCK_LOG_REDACT_FIELDS"])
    return stored_payload(body, fields, names)


def _predictions(status_code: int) -> Any:
    """The first MODELDOCK_LOG_PREDICTION_ROWS rows of what the model answered."""
    answered = g.get("log_predictions")
    limit = current_app.config["MODELDOCK_LOG_PREDICTION_ROWS"]
    if answered is None or status_code != 200 or limit <= 0:
        return None
    labels, probabilities = answered
    return labels[:limit], None if probabilities is None else probabilities[:limit]


def record_response(protocol: str):
    """Return an ``after_request`` hook that logs the request under ``protocol``."""

    def after(response):
        if request.method != "POST":  # metadata reads are not prediction requests
            return response
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        model, version = g.get("log_model"), g.get("log_version")
        metrics.observe_request(model, version, response.status_code, seconds)
        config = current_app.config
        if not config["MODELDOCK_REQUEST_LOG_ENABLED"]:
            return response
        principal = g.get("principal")
        writer().submit(
            log_row(
                request_id=g.get("request_id", ""),
                protocol=g.get("log_protocol", protocol),
                model_name=model,
                version=version,
                api_key_id=principal.api_key_id if principal else None,
                user_id=principal.user_id if principal else None,
                status_code=response.status_code,
                error_code=g.get("log_error_code"),
                rows=g.get("log_rows", 0),
                latency_ms=seconds * 1000.0,
                remote_addr=request.remote_addr,  # truncated when written
                payload=_payload() if config["MODELDOCK_LOG_PAYLOADS"] else None,
                predictions=_predictions(response.status_code),
            )
        )
        return response

    return after


def prune(days: int) -> int:
    """Delete request logs older than ``days`` days; return how many went."""
    cutoff = utcnow() - timedelta(days=days)
    result = db.session.execute(
        delete(RequestLog).where(RequestLog.created_at < cutoff)
    )
    return result.rowcount or 0


def init_app(app: Flask) -> None:
    app.extensions["modeldock.request_log"] = RequestLogWriter(
        app, app.config["MODELDOCK_REQUEST_LOG_FLUSH_SECONDS"]
    )
