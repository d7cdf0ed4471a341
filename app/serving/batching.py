"""Micro-batching for versions served by inference processes (off by default).

scikit-learn pays a large fixed cost per ``predict`` call (input checks, one pass
over every tree), so one call on 8 rows costs little more than one call on 1 row.
With a threaded worker, concurrent requests to the same version queue their rows;
one thread per loaded version waits at most ``max_wait`` after the first arrival
for more (up to ``max_rows``), predicts them in one call and hands each request
its slice. The price is up to ``max_wait`` of added latency per request, which is
why it is off by default and measured by the benchmark.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.serving.runtimes.base import PredictionTimeout

IDLE_EXIT_SECONDS = 5.0  # the thread ends when its version gets no traffic


@dataclass
class _Job:
    rows: np.ndarray
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class MicroBatcher:
    """Collects concurrent requests for one loaded version into single predict calls."""

    def __init__(
        self,
        predict: Callable[[np.ndarray, float], tuple],
        max_rows: int,
        max_wait_seconds: float,
    ):
        self.predict_many = predict
        self.max_rows = max_rows
        self.max_wait = max_wait_seconds
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running_in: int | None = None  # pid whose thread is running
        self.batches = 0
        self.batched_requests = 0

    def predict(self, rows: np.ndarray, deadline: float):
        """Return (labels, probabilities) for ``rows``, possibly batched with others;
        the batch runs under the earliest deadline of the requests in it."""
        if len(rows) >= self.max_rows:
            return self.predict_many(rows, deadline)
        job = _Job(rows, deadline)
        self.queue.put(job)
        self._ensure_thread()
        if not job.done.wait(timeout=max(0.0, deadline - time.monotonic()) + 1.0):
            raise PredictionTimeout()
        if job.error is not None:
            raise job.error
        return job.result

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._running_in != os.getpid():  # none yet, or forked from a parent
                self._running_in = os.getpid()
                threading.Thread(
                    target=self._run, name="micro-batch", daemon=True
                ).start()

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=IDLE_EXIT_SECONDS)
            except queue.Empty:
                with self._lock:  # submitters check under this lock after queueing
                    if self.queue.empty():
                        self._running_in = None
                        return
                continue
            jobs, count = [first], len(first.rows)
            deadline = first.enqueued + self.max_wait
            while count < self.max_rows:
                try:  # whatever queued while the last batch ran joins at once
                    job = self.queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        job = self.queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                jobs.append(job)
                count += len(job.rows)
            self._predict(jobs)

    def _predict(self, jobs: list[_Job]) -> None:
        self.batches += 1
        self.batched_requests += len(jobs)
        if len(jobs) > 1:
            try:
                labels, proba = self.predict_many(
                    np.vstack([j.rows for j in jobs]), min(j.deadline for j in jobs)
                )
            except PredictionTimeout as exc:  # the whole batch ran out of time
                for job in jobs:
                    job.error = exc
                    job.done.set()
                return
            except Exception:
                pass  # predict each alone below, so each request gets its own error
            else:
                start = 0
                for job in jobs:
                    end = start + len(job.rows)
                    job.result = (
                        labels[start:end],
                        None if proba is None else proba[start:end],
                    )
                    start = end
                    job.done.set()
                return
        for job in jobs:
            try:
                job.result = self.predict_many(job.rows, job.deadline)
            except Exception as exc:
                job.error = exc
            job.done.set()
