"""The live sketch: per-worker counts of input values per reference bin and hour,
added on the prediction path and merged into the database by a background thread.

Adding a request costs one ``np.bincount`` over the bins of its values (see
``BinSpec.cells``) and a dictionary update under a lock; no SQL runs on the
request path. A flush upserts the counts (``count = count + new``), so workers
never overwrite each other, and bumps the generation of the hour and day windows it
touched, so the statistics of those windows are recomputed
(``app.monitoring.drift.refresh``). A worker killed with ``kill -9`` loses the
counts since its last flush, like its request logs.
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
        self._lock = threading.Lock()
        self.after_flush = lambda: None  # the background refresh of statistics

    def observe(self, spec: BinSpec, rows: np.ndarray, now: float | None = None):
        """Add ``rows`` (validated, ordered like the model's features)."""
        if not self.enabled:
            return
        cells = spec.count(rows)
        key = (spec.version_id, int(time.time() if now is None else now) // HOUR)
        with self._lock:
            entry = self.counts.get(key)
            if entry is None:
                self.counts[key] = (spec, cells)
            else:
                entry[1][:] += cells
        self.started()

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
