"""Predict one chunk of a job: the unit both runners execute, the same way.

The rows go through the serving path the API uses (``app.serving.predict``: the
version pinned by the job, its runtime — isolated inference processes for
scikit-learn models — its deadline), so model code never runs in the process
that calls this, web worker or Celery worker alike. The result is written with one
UPDATE of the chunk's own row: doing a chunk again overwrites it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from app.batch import storage
from app.extensions import db
from app.models import BatchChunk, BatchJob
from app.models._time import utcnow
from app.serving import predict
from app.ui import csvio
from app.web.errors import APIError

log = logging.getLogger(__name__)


def run_chunk(job_id: str, index: int, worker: str = "") -> str:
    """Predict chunk ``index`` of ``job_id`` and store its result; return what
    happened: ``done``, ``failed``, or ``skipped`` (already done, or the job failed
    or expired)."""
    chunk = db.session.get(BatchChunk, (job_id, index))
    job = db.session.get(BatchJob, job_id)
    if chunk is None or job is None or job.error:
        return "skipped"
    if chunk.status == "done":  # redelivered after it was written: nothing to do
        return "skipped"
    if _job_failed(job_id):
        return "skipped"
    _set(
        job_id,
        index,
        status="running",
        attempts=BatchChunk.attempts + 1,
        worker=worker[:255],
        started_at=utcnow(),
    )
    db.session.commit()
    try:
        answer = _predict(job, chunk)
    except SQLAlchemyError:
        raise  # the database, not the rows: the runner retries or reports it
    except Exception as exc:
        if not isinstance(exc, APIError):
            log.exception("chunk %d of batch job %s failed", index, job_id)
            exc = APIError(500, "internal_error", "Internal error; it has been logged.")
        db.session.rollback()
        _set(
            job_id,
            index,
            status="failed",
            error=exc.message,
            error_code=exc.code,
            finished_at=utcnow(),
        )
        db.session.commit()
        return "failed"
    _set(
        job_id,
        index,
        status="done",
        result=storage.encode(answer),
        error="",
        error_code="",
        finished_at=utcnow(),
    )
    db.session.commit()
    return "done"


def _predict(job: BatchJob, chunk: BatchChunk) -> dict:
    data = storage.decode(chunk.input)
    model, version = predict.resolve(job.model_name, job.version)
    names = version.schema["feature_names"]
    parsed = csvio.ParsedCSV(
        job.input_columns,
        data["rows"],
        data["lines"],
        [job.input_columns.index(name) for name in names],
        names,
    )
    matrix = csvio.to_matrix(parsed, 0, len(parsed), version.schema)
    result = predict.run(model, version, matrix)
    probabilities = result.probabilities if job.classes is not None else None
    return {  # lists: labels may be strings (an object array orjson cannot write)
        "labels": result.labels.tolist(),
        "probabilities": None if probabilities is None else probabilities.tolist(),
    }


def _set(job_id: str, index: int, **values) -> None:
    db.session.execute(
        update(BatchChunk)
        .where(BatchChunk.job_id == job_id, BatchChunk.chunk_index == index)
        .values(**values)
    )


def _job_failed(job_id: str) -> bool:
    """A chunk of this job failed: the others are not worth predicting."""
    return (
        db.session.execute(
            select(BatchChunk.chunk_index)
            .where(BatchChunk.job_id == job_id, BatchChunk.status == "failed")
            .limit(1)
        ).first()
        is not None
    )
