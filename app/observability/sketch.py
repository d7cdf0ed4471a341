"""The live sketch: per-worker counts of input values per reference bin and hour,
added on the prediction path and merged into the database by a background thread.

Adding a request keeps a reference to its rows under a lock; every ``BIN_ROWS``
rows (and at each flush) the rows kept are binned at once, one ``np.bincount``
over their cells (see ``BinSpec.cells``): numpy's fixed cost per call is then paid
per thousand rows, not per request. No SQL runs on the request path. A flush
upserts the counts (``count = count + new``), so workers never overwrite each
other, and bumps the generation of the hour and day windows it touched, so the
statistics of those windows are recomputed (``app.monitoring.drift.refresh``). A
worker killed with ``kill -9`` loses the rows and counts since its last flush, like
its request logs.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from flask import Flask, current_app
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import DriftCount, DriftWindow
from app.observability.background import BackgroundFlush
from app.observability.reference import BinSpec

log = logging.getLogger(__name__)
HOUR = 3600
# Rows kept per version and hour before they are binned. Binning one row costs
# about 8 µs (a dozen numpy calls), a thousand at once about 0.2 µs a row; a
# thousand rows of 30 features hold 240 kB.
BIN_ROWS = 1000


def upsert(model, rows: list[dict], keys: list[str], add: list[str], **also):
    """INSERT … ON CONFLICT (keys) DO UPDATE SET col = col + new, on SQLite and
    PostgreSQL; ``also`` sets further columns to expressions of the old row."""
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(model)
    columns = model.__table__.c
    values = {name: columns[name] + insert.excluded[name] for name in add}
    statement = insert.on_conflict_do_update(
        index_elements=keys, set_={**values, **also}
    )
    # Rows in key order, so that two workers' flushes lock rows in the same order.
    db.session.execute(statement, sorted(rows, key=lambda r: [r[k] for k in keys]))


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR, UTC)


class Sketch(BackgroundFlush):
    """This worker's counts since its last flush: (version id, hour) → counts."""

    thread_name = "drift-sketch"

    def __init__(self, app: Flask, source: str, flush_seconds: float):
        super().__init__(flush_seconds)
        self.app = app
        self.enabled = source == "sketch"
        self.counts: dict[tuple[int, int], tuple[BinSpec, np.ndarray]] = {}
        # Rows not binned yet: (version id, hour) → [spec, arrays, how many rows].
        self.pending: dict[tuple[int, int], list] = {}
        self._lock = threading.Lock()
        self.after_flush = lambda: None  # the background refresh of statistics

    def observe(self, spec: BinSpec, rows: np.ndarray, now: float | None = None):
        """Add ``rows`` (validated, ordered like the model's features; kept until
        binned, so the caller must not change them afterwards)."""
        if not self.enabled:
            return
        key = (spec.version_id, int(time.time() if now is None else now) // HOUR)
        with self._lock:
            entry = self.pending.get(key)
            if entry is None:
                entry = self.pending[key] = [spec, [], 0]
            entry[1].append(rows)
            entry[2] += len(rows)
            full = entry[2] >= BIN_ROWS
            if full:
                del self.pending[key]
        if full:
            self._bin(key, entry[0], entry[1])
        self.started()

    def _bin(self, key: tuple[int, int], spec: BinSpec, batches: list) -> None:
        """Add the counts of ``batches`` (row arrays) to ``key``'s vector."""
        cells = spec.count(batches[0] if len(batches) == 1 else np.concatenate(batches))
        with self._lock:
            entry = self.counts.get(key)
            if entry is None:
                self.counts[key] = (spec, cells)
            else:
                entry[1][:] += cells

    def tick(self) -> None:
        self.flush()
        with self.app.app_context():
            try:
                self.after_flush()
            finally:
                db.session.remove()

    def flush(self) -> int:
        """Merge the counts into the database; return how many cells were written.

        On failure the counts are put back and added to what came in meanwhile.
        """
        with self._lock:
            pending, self.pending = self.pending, {}
        for key, (spec, batches, _) in pending.items():
            self._bin(key, spec, batches)
        with self._lock:
            taken, self.counts = self.counts, {}
        if not taken:
            return 0
        cells, windows = [], {}
        for (version_id, hour), (spec, vector) in taken.items():
            start = hour_start(hour)
            for cell in np.flatnonzero(vector).tolist():
                feature, slot = divmod(cell, spec.slots)
                cells.append(
                    {
                        "version_id": version_id,
                        "hour": start,
                        "feature": feature,
                        "bin": slot,
                        "count": int(vector[cell]),
                    }
                )
            rows = int(vector[: spec.slots].sum())  # feature 0 sees every row
            day = start.replace(hour=0)
            for kind, begin in (("hour", start), ("day", day)):
                entry = windows.setdefault((version_id, kind, begin), 0)
                windows[(version_id, kind, begin)] = entry + rows
        with self.app.app_context():
            try:
                upsert(
                    DriftCount,
                    cells,
                    ["version_id", "hour", "feature", "bin"],
                    ["count"],
                )
                upsert(
                    DriftWindow,
                    [
                        {
                            "version_id": v,
                            "kind": kind,
                            "start": begin,
                            "generation": 1,
                            "computed": -1,
                            "rows": rows,
                        }
                        for (v, kind, begin), rows in windows.items()
                    ],
                    ["version_id", "kind", "start"],
                    ["generation", "rows"],
                )
                db.session.commit()
            except Exception:
                db.session.rollback()
                self._put_back(taken)
                raise
            finally:
                db.session.remove()
        return len(cells)

    def _put_back(self, taken) -> None:
        with self._lock:
            for key, (spec, vector) in taken.items():
                entry = self.counts.get(key)
                if entry is None:
                    self.counts[key] = (spec, vector)
                else:
                    entry[1][:] += vector


def sketch() -> Sketch:
    """This worker's sketch."""
    return current_app.extensions["modeldock.drift_sketch"]


def sketch_of(app: Flask) -> Sketch:
    return app.extensions["modeldock.drift_sketch"]


def day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def window_end(kind: str, start: datetime) -> datetime:
    return start + (timedelta(hours=1) if kind == "hour" else timedelta(days=1))


def init_app(app: Flask) -> None:
    app.extensions["modeldock.drift_sketch"] = Sketch(
        app,
        app.config["MODELDOCK_DRIFT_SOURCE"],
        app.config["MODELDOCK_DRIFT_FLUSH_SECONDS"],
    )
