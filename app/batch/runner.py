"""Who runs a job's chunks, switched by one setting: with
``MODELDOCK_CELERY_BROKER_URL`` one task per chunk goes to the broker and Celery
workers on any host take them; without it a thread of the web worker that received
the job runs them one after the other. Either way each chunk is
``chunks.run_chunk`` and everything lands in the database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery
from flask import Flask, current_app
from kombu.exceptions import KombuError
from sqlalchemy import update

from app.batch import chunks
from app.extensions import db
from app.models import BatchChunk, BatchJob
from app.models._time import utcnow
from app.observability.request_log import log_row, writer
from app.web.errors import APIError

log = logging.getLogger(__name__)

TASK_NAME = "modeldock.batch.chunk"
# A chunk's failure in the request log: input problems are the client's (400).
_STATUS = {
    "internal_error": 500,
    "runtime_failed": 502,
    "prediction_timeout": 504,
    "prediction_failed": 422,
    "version_archived": 409,
}


def celery_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Celery's configuration from ModelDock's settings (web side and workers)."""
    url = config["MODELDOCK_CELERY_BROKER_URL"]
    settings: dict[str, Any] = {
        "broker_url": url,
        "task_default_queue": config["MODELDOCK_CELERY_QUEUE"],
        # A chunk is acknowledged only once its result is stored; a worker that
        # dies holding it (even by SIGKILL) has it redelivered to another.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a worker holds only the chunk it runs
        "task_ignore_result": True,  # progress and results are in the database
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3.0,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        "worker_send_task_events": False,
    }
    if url.startswith(("redis://", "rediss://")):
        settings["broker_transport_options"] = {
            # Redis redelivers a dead worker's chunk after this many seconds.
            "visibility_timeout": 600,
            "global_keyprefix": config["MODELDOCK_REDIS_PREFIX"] + "celery:",
        }
    return settings


def init_app(app: Flask) -> None:
    """A Celery client for sending chunks when a broker is set (no connection yet)."""
    client = None
    if app.config["MODELDOCK_CELERY_BROKER_URL"]:
        client = Celery(
            "modeldock", set_as_current=False, config_source=celery_settings(app.config)
        )
    app.extensions["modeldock.batch"] = client


def mode() -> str:
    """``celery`` when a broker is configured, else ``in-process``."""
    return "celery" if current_app.extensions.get("modeldock.batch") else "in-process"


def start(
    app: Flask,
    job: BatchJob,
    user_id: int | None = None,
    remote_addr: str | None = None,
) -> threading.Thread | None:
    """Run a committed job: send its chunks to the broker, or start its thread."""
    client: Celery | None = app.extensions.get("modeldock.batch")
    if client is None:
        thread = threading.Thread(
            target=run_here,
            args=(app, job.id, job.total_chunks, job.source, user_id, remote_addr),
            name=f"batch-job-{job.id[:8]}",
            daemon=True,
        )
        thread.start()
        return thread
    _send(client, app.config["MODELDOCK_CELERY_QUEUE"], job.id, job.total_chunks)
    return None


def _send(client: Celery, queue: str, job_id: str, total: int) -> None:
    try:
        with client.producer_or_acquire() as producer:
            for index in range(total):
                client.send_task(
                    TASK_NAME, args=(job_id, index), queue=queue, producer=producer
                )
    except (KombuError, OSError) as exc:
        log.warning("batch job %s: the broker refused its chunks: %s", job_id, exc)
        raise APIError(
            503,
            "broker_unavailable",
            "the job was not started: the batch workers' broker is unreachable; "
            "try again later",
            None,
        ) from exc


def run_here(
    app: Flask,
    job_id: str,
    total: int,
    source: str = "api",
    user_id: int | None = None,
    remote_addr: str | None = None,
) -> None:
    """Run every chunk of a job in this thread, beating the job's heartbeat."""
    started = time.perf_counter()
    status, code = 200, None
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with app.app_context():
        try:
            for index in range(total):
                outcome = chunks.run_chunk(job_id, index, worker)
                _heartbeat(job_id)
                if outcome == "failed":
                    chunk = db.session.get(BatchChunk, (job_id, index))
                    code = chunk.error_code
                    status = _STATUS.get(code, 400)
                    break
        except Exception:  # never leave a job "running" until the heartbeat expires
            log.exception("batch job %s failed", job_id)
            db.session.rollback()
            status, code = 500, "internal_error"
            db.session.execute(
                update(BatchJob)
                .where(BatchJob.id == job_id)
                .values(error="Internal error; it has been logged.")
            )
            db.session.commit()
        finally:
            if source == "web-csv":
                _log_request(app, job_id, status, code, started, user_id, remote_addr)
            db.session.remove()


def _heartbeat(job_id: str) -> None:
    db.session.execute(
        update(BatchJob).where(BatchJob.id == job_id).values(updated_at=utcnow())
    )
    db.session.commit()


def _log_request(
    app: Flask,
    job_id: str,
    status: int,
    code: str | None,
    started: float,
    user_id: int | None,
    remote_addr: str | None,
) -> None:
    """One request-log row per CSV job of the predict page, like any prediction."""
    job = db.session.get(BatchJob, job_id)
    if job is None or not app.config["MODELDOCK_REQUEST_LOG_ENABLED"]:
        return
    writer().submit(
        log_row(
            request_id=job.id,
            protocol="web-csv",
            model_name=job.model_name,
            version=job.version,
            user_id=user_id,
            status_code=status,
            error_code=code,
            rows=job.total_rows,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            remote_addr=remote_addr,
        )
    )
