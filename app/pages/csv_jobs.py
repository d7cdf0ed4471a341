"""CSV prediction jobs: created by a request, run by a thread, read by any worker.

Why the database and not the cache: the default cache (SimpleCache) lives inside
one process, so with several gunicorn workers a progress poll answered by another
worker would find nothing; Redis is optional. The database is shared by every
worker in every configuration, survives a restart, and a job row carries its
progress, its result (gzip CSV) and a heartbeat that shows when the worker
running it has died.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
from flask import Flask, current_app
from sqlalchemy import delete

from app.extensions import db
from app.models import PredictionJob
from app.models._time import utcnow
from app.observability.request_log import log_row, writer
from app.serving import predict
from app.ui import csvio
from app.web.errors import APIError

log = logging.getLogger(__name__)

CHUNK_ROWS = 5_000
# A running job whose heartbeat is older than this lost its worker.
STALE_AFTER = timedelta(seconds=120)
HISTOGRAM_BINS = 20


def create(
    user_id: int, model_name: str, version: int, filename: str, total_rows: int
) -> PredictionJob:
    """Add a queued job (and forget jobs past their retention time)."""
    hours = current_app.config["MODELDOCK_CSV_RESULT_HOURS"]
    db.session.execute(
        delete(PredictionJob).where(
            PredictionJob.created_at < utcnow() - timedelta(hours=hours)
        )
    )
    job = PredictionJob(
        id=secrets.token_hex(16),
        user_id=user_id,
        model_name=model_name,
        version=version,
        filename=filename[:255],
        total_rows=total_rows,
    )
    db.session.add(job)
    db.session.flush()
    return job


def launch(
    app: Flask,
    job_id: str,
    parsed: csvio.ParsedCSV,
    user_id: int,
    remote_addr: str | None,
) -> threading.Thread:
    """Run a committed job in a daemon thread of this worker."""
    thread = threading.Thread(
        target=run,
        args=(app, job_id, parsed, user_id, remote_addr),
        name=f"csv-job-{job_id[:8]}",
        daemon=True,
    )
    thread.start()
    return thread


def run(
    app: Flask,
    job_id: str,
    parsed: csvio.ParsedCSV,
    user_id: int | None = None,
    remote_addr: str | None = None,
) -> None:
    """Predict every row of ``parsed`` in chunks, recording progress as it goes."""
    started = time.perf_counter()
    status, error_code = 200, None
    with app.app_context():
        job = db.session.get(PredictionJob, job_id)
        try:
            job.status, job.updated_at = "running", utcnow()
            db.session.commit()
            _predict_all(job, parsed)
        except APIError as error:
            status, error_code = error.status, error.code
            _fail(job, error.message)
        except Exception:  # never leave a job "running" forever
            log.exception("CSV job %s failed", job_id)
            status, error_code = 500, "internal_error"
            _fail(job, "Internal error; it has been logged.")
        finally:
            _log_request(job, status, error_code, started, user_id, remote_addr)
            db.session.remove()


def _predict_all(job: PredictionJob, parsed: csvio.ParsedCSV) -> None:
    model, version = predict.resolve(job.model_name, job.version)
    schema = version.schema
    with_proba = bool(schema.get("has_proba"))
    header = csvio.result_header(parsed, schema.get("classes"), with_proba)
    text = io.StringIO()
    # "\r\n" lines make the writer quote cells holding a bare "\r" or "\n" too,
    # so reading the table back gives the same rows.
    out = csv.writer(text, lineterminator="\r\n")
    out.writerow(header)
    labels: list = []
    last_commit = time.monotonic()
    for start in range(0, len(parsed), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(parsed))
        matrix = csvio.to_matrix(parsed, start, stop, schema)
        result = predict.run(model, version, matrix)
        out.writerows(
            csvio.result_rows(
                parsed,
                start,
                result.labels,
                result.probabilities if with_proba else None,
            )
        )
        labels.extend(result.labels.tolist())
        job.done_rows = stop
        if time.monotonic() - last_commit > 0.5 or stop == len(parsed):
            job.updated_at = utcnow()
            db.session.commit()
            last_commit = time.monotonic()
    job.result = gzip.compress(text.getvalue().encode(), compresslevel=5)
    job.summary = {
        "columns": header,
        "inputs": len(parsed.header),
        "chart": _chart_data(schema, labels),
    }
    job.status, job.finished_at = "done", utcnow()
    job.updated_at = job.finished_at
    db.session.commit()


def _chart_data(schema: dict, labels: list) -> dict:
    """Class counts for classifiers, a histogram of predictions for the rest."""
    if schema.get("task") == "classification":
        counts = Counter(labels)
        classes = schema.get("classes") or sorted(counts, key=str)
        return {
            "kind": "counts",
            "labels": [str(c) for c in classes],
            "values": [counts.get(c, 0) for c in classes],
        }
    values = np.asarray(labels, dtype=np.float64)
    values = values[np.isfinite(values)]  # NaN/inf cells are empty in the table
    try:
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    except ValueError:  # one value too large for 20 bins around it: one bar
        low, high = (
            (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        )
        counts, edges = np.array([values.size]), np.array([low, high])
    return {"kind": "histogram", "edges": edges.tolist(), "values": counts.tolist()}


def _fail(job: PredictionJob, message: str) -> None:
    db.session.rollback()
    job = db.session.get(PredictionJob, job.id)
    job.status, job.error = "failed", message
    job.finished_at = job.updated_at = utcnow()
    db.session.commit()


def _log_request(
    job: PredictionJob,
    status: int,
    error_code: str | None,
    started: float,
    user_id: int | None,
    remote_addr: str | None,
) -> None:
    """One request-log row per CSV job, like any prediction request."""
    writer().submit(
        log_row(
            request_id=job.id,
            protocol="web-csv",
            model_name=job.model_name,
            version=job.version,
            user_id=user_id,
            status_code=status,
            error_code=error_code,
            rows=job.total_rows,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            remote_addr=remote_addr,
        )
    )


def get_for(job_id: str, user_id: int) -> PredictionJob:
    """Return the user's own job, or a 404 (another user's id reveals nothing)."""
    job = db.session.get(PredictionJob, job_id)
    if job is None or job.user_id != user_id:
        raise APIError(
            404,
            "job_not_found",
            "no such prediction job (results are kept for a limited time)",
            "job",
        )
    if job.status in {"queued", "running"} and job.updated_at < utcnow() - STALE_AFTER:
        job.status, job.error = (
            "failed",
            "The worker running this job stopped; upload the file again.",
        )  # the view commits
    return job


def read_rows(job: PredictionJob, offset: int, limit: int) -> list[list[str]]:
    """Rows ``offset:offset+limit`` of a finished job's result (header excluded)."""
    return list(itertools.islice(_result_reader(job), 1 + offset, 1 + offset + limit))


def export(job: PredictionJob) -> Iterator[str]:
    """The whole result as neutralised CSV text, line by line."""
    return csvio.export_lines(_result_reader(job))


def _result_reader(job: PredictionJob):
    text = gzip.decompress(job.result or b"").decode()
    return csv.reader(io.StringIO(text, newline=""))
