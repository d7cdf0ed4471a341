"""Where a batch job lives: its rows in chunk rows, each chunk's result beside its
input, progress counted from the chunks. Both runners (a thread of the web worker,
Celery workers) read and write through this module only.

A chunk's input and result are gzip-compressed JSON blobs in its own row, written by
an UPDATE of that row: a chunk predicted twice (a worker died before the broker
heard it was done) overwrites its result and never adds rows.
"""

from __future__ import annotations

import gzip
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy import case, delete, func, select

from app.extensions import db
from app.models import BatchChunk, BatchJob
from app.models._time import utcnow
from app.ui import csvio
from app.web.errors import APIError

# An in-process job whose heartbeat is older than this lost its thread.
STALE_AFTER = timedelta(seconds=120)
HISTOGRAM_BINS = 20
_JSON = orjson.OPT_SERIALIZE_NUMPY


def encode(value: Any) -> bytes:
    """A chunk blob: JSON (numpy arrays included; NaN as null), gzip level 3."""
    return gzip.compress(orjson.dumps(value, option=_JSON), compresslevel=3)


def decode(blob: bytes | None) -> Any:
    return orjson.loads(gzip.decompress(blob or b"")) if blob else None


def create_job(
    *,
    user_id: int,
    model_name: str,
    version: int,
    source: str,
    runner: str,
    filename: str,
    header: list[str],
    rows: list[list],
    lines: list[int],
    classes: list | None,
    task: str | None,
    chunk_rows: int,
    keep_hours: int,
) -> BatchJob:
    """Add a job and its chunks (flushed, not committed); forget expired jobs."""
    expired = select(BatchJob.id).where(
        BatchJob.created_at < utcnow() - timedelta(hours=keep_hours)
    )
    # Chunks first: SQLite enforces no ON DELETE CASCADE unless asked to.
    db.session.execute(delete(BatchChunk).where(BatchChunk.job_id.in_(expired)))
    db.session.execute(
        delete(BatchJob).where(
            BatchJob.created_at < utcnow() - timedelta(hours=keep_hours)
        )
    )
    chunk_rows = max(1, chunk_rows)
    job = BatchJob(
        id=secrets.token_hex(16),
        user_id=user_id,
        model_name=model_name,
        version=version,
        source=source,
        runner=runner,
        filename=filename[:255],
        input_columns=header,
        classes=classes,
        total_rows=len(rows),
        chunk_rows=chunk_rows,
        total_chunks=(len(rows) + chunk_rows - 1) // chunk_rows,
        error="",
        summary={"task": task},
    )
    db.session.add(job)
    db.session.flush()
    for index, start in enumerate(range(0, len(rows), chunk_rows)):
        stop = start + chunk_rows
        db.session.add(
            BatchChunk(
                job_id=job.id,
                chunk_index=index,
                rows=len(rows[start:stop]),
                input=encode({"rows": rows[start:stop], "lines": lines[start:stop]}),
            )
        )
    db.session.flush()
    return job


@dataclass
class Progress:
    """A job's state as its chunk rows tell it."""

    status: str  # queued, running, done or failed
    total_rows: int
    done_rows: int
    total_chunks: int
    done_chunks: int
    running_chunks: int
    failed_chunks: int
    redone_chunks: int  # chunks a worker started more than once
    error: str = ""
    error_code: str = ""
    finished_at: datetime | None = None

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 0
        return int(100 * self.done_rows / self.total_rows)


def progress(job: BatchJob) -> Progress:
    """Count the chunks by state (one query); an in-process job whose thread stopped
    beating is marked failed (the caller commits)."""
    counts = db.session.execute(
        select(
            BatchChunk.status,
            func.count(),
            func.coalesce(func.sum(BatchChunk.rows), 0),
            func.coalesce(func.sum(case((BatchChunk.attempts > 1, 1), else_=0)), 0),
            func.max(BatchChunk.finished_at),
        )
        .where(BatchChunk.job_id == job.id)
        .group_by(BatchChunk.status)
    ).all()
    chunks = {
        status: (n, rows, redone, last) for status, n, rows, redone, last in counts
    }
    done, done_rows, _, finished = chunks.get("done", (0, 0, 0, None))
    failed = chunks.get("failed", (0, 0, 0, None))[0]
    running = chunks.get("running", (0, 0, 0, None))[0]
    state = Progress(
        status="queued",
        total_rows=job.total_rows,
        done_rows=int(done_rows),
        total_chunks=job.total_chunks,
        done_chunks=done,
        running_chunks=running,
        failed_chunks=failed,
        redone_chunks=sum(int(c[2]) for c in chunks.values()),
    )
    if failed:
        first = db.session.execute(
            select(BatchChunk.error, BatchChunk.error_code)
            .where(BatchChunk.job_id == job.id, BatchChunk.status == "failed")
            .order_by(BatchChunk.chunk_index)
            .limit(1)
        ).one()
        state.status, state.error, state.error_code = "failed", first[0], first[1]
    elif job.error:
        state.status, state.error, state.error_code = "failed", job.error, "job_failed"
    elif done == job.total_chunks:
        state.status, state.finished_at = "done", finished
    elif running or done:
        state.status = "running"
    if (
        state.status in {"queued", "running"}
        and job.runner == "in-process"
        and job.updated_at < utcnow() - STALE_AFTER
    ):
        job.error = "The worker running this job stopped; upload the file again."
        state.status, state.error, state.error_code = "failed", job.error, "job_failed"
    return state


def chunk_result(job: BatchJob, index: int) -> tuple[list[list], list, list | None]:
    """One chunk's input rows, labels and probabilities (None without classes)."""
    stored, result = db.session.execute(
        select(BatchChunk.input, BatchChunk.result).where(
            BatchChunk.job_id == job.id, BatchChunk.chunk_index == index
        )
    ).one()
    rows, answer = decode(stored)["rows"], decode(result)
    if answer is None:  # callers check the progress first
        raise APIError(409, "job_not_finished", "the job has not finished", "job")
    return rows, answer["labels"], answer["probabilities"]


def result_header(job: BatchJob) -> list[str]:
    """Every input column, the prediction, then one probability per class."""
    header = [*job.input_columns, "prediction"]
    if job.classes is not None:
        header += [f"probability_{c}" for c in job.classes]
    return header


def table_rows(job: BatchJob, first_chunk: int = 0) -> Iterator[list]:
    """The result table's rows (header excluded), read one chunk at a time."""
    for index in range(first_chunk, job.total_chunks):
        rows, labels, probabilities = chunk_result(job, index)
        parsed = csvio.ParsedCSV(job.input_columns, rows, [], [], [])
        yield from csvio.result_rows(
            parsed,
            0,
            np.asarray(labels, dtype=object),
            None if probabilities is None else np.asarray(probabilities, dtype=object),
        )


def read_rows(job: BatchJob, offset: int, limit: int) -> list[list]:
    """Rows ``offset:offset+limit`` of a finished job's result table, as text."""
    first = offset // job.chunk_rows
    out: list[list] = []
    skip = offset - first * job.chunk_rows
    for row in table_rows(job, first):
        if skip:
            skip -= 1
            continue
        out.append(["" if cell is None else str(cell) for cell in row])  # as in CSV
        if len(out) >= limit:
            break
    return out


def export_csv(job: BatchJob) -> Iterator[str]:
    """The whole result as neutralised CSV text, line by line."""

    def rows():
        yield result_header(job)
        yield from table_rows(job)

    return csvio.export_lines(rows())


def export_jsonl(job: BatchJob) -> Iterator[bytes]:
    """One JSON object per row: its number, the prediction, probabilities by class."""
    number = 0
    names = None if job.classes is None else [str(c) for c in job.classes]
    for index in range(job.total_chunks):
        _, labels, probabilities = chunk_result(job, index)
        lines = []
        for i, label in enumerate(labels):
            line: dict[str, Any] = {"row": number, "prediction": label}
            if names is not None and probabilities is not None:
                line["probabilities"] = dict(zip(names, probabilities[i], strict=True))
            lines.append(orjson.dumps(line))
            number += 1
        yield b"\n".join(lines) + b"\n"


def summary(job: BatchJob) -> dict:
    """Chart data of a finished job, made once and kept (the caller commits)."""
    if "chart" not in (job.summary or {}):
        labels: list = []
        for index in range(job.total_chunks):
            labels.extend(chunk_result(job, index)[1])
        task = (job.summary or {}).get("task")
        job.summary = {
            "task": task,
            "columns": result_header(job),
            "inputs": len(job.input_columns),
            "chart": _chart_data(task, job.classes, labels),
        }
    return job.summary


def _chart_data(task: str | None, classes: list | None, labels: list) -> dict:
    """Class counts for classifiers, a histogram of predictions for the rest."""
    if task == "classification":
        counts = Counter(labels)
        classes = classes or sorted(counts, key=str)
        return {
            "kind": "counts",
            "labels": [str(c) for c in classes],
            "values": [counts.get(c, 0) for c in classes],
        }
    values = np.asarray([np.nan if v is None else v for v in labels], dtype=np.float64)
    values = values[np.isfinite(values)]  # NaN/inf cells are empty in the table
    try:
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    except ValueError:  # one value too large for 20 bins around it: one bar
        low, high = (
            (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        )
        counts, edges = np.array([values.size]), np.array([low, high])
    return {"kind": "histogram", "edges": edges.tolist(), "values": counts.tolist()}


def get_for(job_id: str, user_id: int) -> BatchJob:
    """The user's own job, or a 404 (another user's id reveals nothing)."""
    job = db.session.get(BatchJob, job_id) if len(job_id) == 32 else None
    if job is None or job.user_id != user_id:
        raise APIError(
            404,
            "job_not_found",
            "no such batch job (results are kept for a limited time)",
            "job",
        )
    return job
