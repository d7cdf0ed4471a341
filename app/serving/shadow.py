"""Shadow traffic: a copy of stable requests answered by the shadow version, off the
request path.

The request only enqueues (rows, stable answer); a daemon thread per worker predicts
with the shadow version and stores both answers in batches. A full queue drops the
copy (counted), so a slow shadow can never slow or fail the caller.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Flask
from sqlalchemy import insert

from app.extensions import db
from app.models import ShadowResult
from app.models._time import utcnow

log = logging.getLogger(__name__)
KEEP_ROWS = 100  # answers stored per request; the counts cover every row


@dataclass
class ShadowJob:
    model_id: int
    task: str
    stable_version: int
    shadow: Any  # VersionInfo of the shadow version
    rows: np.ndarray
    stable_labels: np.ndarray
    created_at: Any


class ShadowRunner:
    """A bounded queue and one daemon thread per worker process."""

    def __init__(self, app: Flask, max_queue: int = 1000):
        self.app = app
        self.queue: queue.Queue[ShadowJob] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self._pid: int | None = None
        self._lock = threading.Lock()

    def submit(self, model, stable, shadow, rows: np.ndarray, labels: np.ndarray):
        """Enqueue a copy of a stable request; never blocks, never raises."""
        job = ShadowJob(
            model.id, model.task, stable.number, shadow, rows, labels, utcnow()
        )
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            return
        if self.app.config["MODELDOCK_REQUEST_LOG_FLUSH_SECONDS"] > 0:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="shadow", daemon=True).start()

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            jobs = [first]
            while len(jobs) < 100:
                try:
                    jobs.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(jobs)
            except Exception:
                log.exception("shadow batch failed; %d copies lost", len(jobs))

    def drain(self) -> int:
        """Process everything queued now, in this thread (tests, shutdown)."""
        jobs = []
        while True:
            try:
                jobs.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if jobs:
            self._process(jobs)
        return len(jobs)

    def _process(self, jobs: list[ShadowJob]) -> None:
        with self.app.app_context():
            state = self.app.extensions["modeldock"]  # the ServingState holding us
            try:
                db.session.execute(
                    insert(ShadowResult), [self._compare(state, job) for job in jobs]
                )
                db.session.commit()
            finally:
                db.session.remove()

    @staticmethod
    def _compare(state, job: ShadowJob) -> dict[str, Any]:
        row = {
            "created_at": job.created_at,
            "model_id": job.model_id,
            "stable_version": job.stable_version,
            "shadow_version": job.shadow.number,
            "rows": len(job.rows),
            "stable_predictions": job.stable_labels[:KEEP_ROWS].tolist(),
            "shadow_predictions": None,
            "agree": None,
            "abs_error": None,
            "sq_error": None,
            "error": None,
        }
        try:
            shadow = state.load_version(job.shadow)
            labels, _ = shadow.predict(job.rows, state.deadline_for(None))
        except Exception as exc:  # a failing shadow is data, not an outage
            row["error"] = getattr(exc, "code", type(exc).__name__)
            return row
        labels = np.asarray(labels)
        row["shadow_predictions"] = labels[:KEEP_ROWS].tolist()
        if job.task == "regression":
            diff = labels.astype(float) - job.stable_labels.astype(float)
            row["abs_error"] = float(np.abs(diff).sum())
            row["sq_error"] = float((diff**2).sum())
        else:
            row["agree"] = int((labels == job.stable_labels).sum())
        return row
