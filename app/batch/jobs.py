"""Batch scoring, as the views use it: turn checked input into a job, start it, read
its state. What the rows become is decided here once for the predict page's CSV
upload and the batch API alike."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from flask import Flask, current_app

from app.batch import runner, storage
from app.extensions import db
from app.models import BatchJob
from app.serving.snapshot import VersionInfo
from app.ui import csvio


def from_csv(
    user_id: int,
    model_name: str,
    version: VersionInfo,
    parsed: csvio.ParsedCSV,
    filename: str,
    source: str,
) -> BatchJob:
    """A job for an uploaded table (checked by ``csvio.read_csv``); flushed."""
    return _create(
        user_id,
        model_name,
        version,
        source,
        filename,
        parsed.header,
        parsed.rows,
        parsed.lines,
    )


def from_matrix(
    user_id: int, model_name: str, version: VersionInfo, matrix: np.ndarray
) -> BatchJob:
    """A job for validated JSON rows (columns named by the model's features)."""
    rows = matrix.tolist()  # floats; NaN is stored as null and read back as NaN
    return _create(
        user_id,
        model_name,
        version,
        "api",
        "",
        list(version.schema["feature_names"]),
        rows,
        list(range(1, len(rows) + 1)),
    )


def _create(
    user_id: int,
    model_name: str,
    version: VersionInfo,
    source: str,
    filename: str,
    header: list[str],
    rows: list[list[Any]],
    lines: list[int],
) -> BatchJob:
    config = current_app.config
    schema = version.schema
    return storage.create_job(
        user_id=user_id,
        model_name=model_name,
        version=version.number,
        source=source,
        runner=runner.mode(),
        filename=filename,
        header=header,
        rows=rows,
        lines=lines,
        classes=schema.get("classes") if schema.get("has_proba") else None,
        task=schema.get("task"),
        chunk_rows=config["MODELDOCK_BATCH_CHUNK_ROWS"],
        keep_hours=config["MODELDOCK_CSV_RESULT_HOURS"],
    )


def start(
    job: BatchJob, user_id: int | None = None, remote_addr: str | None = None
) -> threading.Thread | None:
    """Start a committed job; a broker that refuses it fails the job (committed
    here, since the request answers with an error) and raises a 503."""
    app: Flask = current_app._get_current_object()
    try:
        return runner.start(app, job, user_id, remote_addr)
    except Exception:
        job.error = "The job could not be sent to the batch workers; try again."
        db.session.commit()
        raise


def own_job(job_id: str, user_id: int) -> tuple[BatchJob, storage.Progress]:
    """The user's job and its progress (a stale in-process job is marked failed,
    which the caller commits)."""
    job = storage.get_for(job_id, user_id)
    return job, storage.progress(job)
