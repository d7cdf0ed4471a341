"""Drift as Prometheus gauges, read from the database at scrape time.

``modeldock_feature_drift_psi`` and ``modeldock_feature_drift_pvalue`` with labels
model, version, feature and window (hour, day): the newest window of each kind.
Read from the stored statistics, so every worker answers alike and no
multiprocess gauge files are needed; with the database away they are left out.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.monitoring import drift

log = logging.getLogger(__name__)
LABELS = ["model", "version", "feature", "window"]


class DriftCollector:
    """Yields the drift gauges from ``drift.latest()``."""

    def collect(self):
        psi = GaugeMetricFamily(
            "modeldock_feature_drift_psi",
            "Population stability index of a feature's live inputs against the "
            "version's reference, newest hour or day window.",
            labels=LABELS,
        )
        pvalue = GaugeMetricFamily(
            "modeldock_feature_drift_pvalue",
            "p-value of the two-sample test (chi-square on bins, or KS) of a "
            "feature against the reference, newest hour or day window.",
            labels=LABELS,
        )
        try:
            rows = drift.latest()
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("drift gauges skipped, database unreachable: %s", error)
            rows = []
        for row in rows:
            labels = [row["model"], row["version"], row["feature"], row["window"]]
            psi.add_metric(labels, row["psi"])
            if row["pvalue"] is not None:
                pvalue.add_metric(labels, row["pvalue"])
        yield psi
        yield pvalue


def exposition() -> bytes:
    """The drift gauges in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector())
    return generate_latest(registry)
