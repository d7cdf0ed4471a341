"""The live-quality gauges of ``/metrics``, recomputed at most every
MODELDOCK_QUALITY_CACHE_SECONDS per worker when a scrape reads them."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models._time import utcnow
from app.monitoring import quality
from app.observability import metrics
from app.registry import describe

log = logging.getLogger(__name__)
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
VERDICTS = {"better": 1.0, "no clear difference": 0.0, "worse": -1.0}


class QualityGauges:
    """Per worker: when the gauges were last set, and which series it set."""

    def __init__(self):
        self.lock = threading.Lock()
        self.refreshed = -math.inf
        self.series: set[tuple] = set()  # (gauge, labels) set last time

    def refresh(self, max_age: float) -> None:
        """Recompute the gauges if older than ``max_age`` seconds; a database error
        keeps the previous values (the scrape must still answer)."""
        with self.lock:
            if time.monotonic() - self.refreshed < max_age:
                return
            self.refreshed = time.monotonic()
            try:
                values = compute()
            except SQLAlchemyError as error:
                db.session.rollback()
                log.warning("live quality gauges not refreshed: %s", error)
                return
            for gauge, labels in self.series - values.keys():
                gauge.labels(*labels).set(math.nan)  # no feedback any more
            for (gauge, labels), value in values.items():
                gauge.labels(*labels).set(value)
            self.series = set(values)


def compute() -> dict[tuple, float]:
    """(gauge, labels) → value for every model with feedback in the last day."""
    now = utcnow()
    rows = quality.outcomes(now - WINDOWS["day"])
    by_model: dict[str, list] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    values: dict[tuple, float] = {}
    for model in quality.live_models():
        model_rows = by_model.get(model.name)
        if not model_rows:
            continue
        classifier = model.task == "classification"
        gauge = metrics.LIVE_ACCURACY if classifier else metrics.LIVE_MAE
        grouped = quality.by_version(model_rows)
        for number, version_rows in grouped.items():
            for window, span in WINDOWS.items():
                recent = [r for r in version_rows if r.at >= now - span]
                labels = (model.name, str(number), window)
                values[(metrics.LIVE_SAMPLES, labels)] = len(recent)
                values[(gauge, labels)] = _figure(recent, classifier)
        aliases = describe.aliases_of(model)
        if "canary" in aliases and "stable" in aliases:
            compared = quality.compare(
                model.task,
                grouped.get(aliases["stable"]["version"], []),
                grouped.get(aliases["canary"]["version"], []),
            )
            delta = compared["difference"]["value"]
            key = (
                metrics.CANARY_ACCURACY_DELTA
                if classifier
                else metrics.CANARY_MAE_DELTA
            )
            values[(key, (model.name,))] = math.nan if delta is None else delta
            for side in ("canary", "stable"):
                samples = compared[f"n_{side}"]
                values[(metrics.CANARY_SAMPLES, (model.name, side))] = samples
            verdict = VERDICTS.get(compared["verdict"], math.nan)
            values[(metrics.CANARY_VERDICT, (model.name,))] = verdict
    return values


def _figure(rows: list, classifier: bool) -> float:
    if not rows:
        return math.nan
    if classifier:
        return sum(r.predicted == r.truth for r in rows) / len(rows)
    return sum(abs(float(r.predicted) - float(r.truth)) for r in rows) / len(rows)


def refresh() -> None:
    """Bring this worker's gauges up to date (called by the ``/metrics`` view)."""
    gauges = current_app.extensions.setdefault(
        "modeldock.quality_gauges", QualityGauges()
    )
    gauges.refresh(current_app.config["MODELDOCK_QUALITY_CACHE_SECONDS"])
