"""Prometheus metrics; correct across gunicorn workers through multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it before any worker
starts), each worker writes its values to files in that folder and a scrape of
``/metrics`` on any worker adds them all up.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections import Counter as Tally

import numpy as np
from flask import request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "modeldock_requests",
    "Prediction requests by model, version and HTTP status "
    "(model and version are empty when the request never reached a model).",
    ["model", "version", "status"],
)
LATENCY = Histogram(
    "modeldock_request_duration_seconds",
    "Prediction request latency in the app.",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PREDICTIONS = Counter(
    "modeldock_predictions",
    "Predicted rows by model and class (classifiers).",
    ["model", "class"],
)
MODEL_LOAD = Histogram(
    "modeldock_model_load_seconds",
    "Time to load a model artifact into a worker.",
    ["format"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CACHE_HITS = Counter(
    "modeldock_prediction_cache_hits", "Predictions answered from the prediction cache."
)
CACHE_MISSES = Counter(
    "modeldock_prediction_cache_misses",
    "Predictions computed because the cache had no answer.",
)
CACHE_ERRORS = Counter(
    "modeldock_prediction_cache_errors",
    "Cache reads or writes that failed (Redis unreachable).",
)
RATE_LIMITED = Counter(
    "modeldock_rate_limited", "Requests refused with 429.", ["endpoint"]
)
LOG_QUEUE = Gauge(
    "modeldock_request_log_queue_depth",
    "Request-log rows waiting to be written, summed over live workers.",
    multiprocess_mode="livesum",
)
LOG_DROPPED = Counter(
    "modeldock_request_log_dropped",
    "Request-log rows dropped because the database stayed away "
    "while the queue was full.",
)
LOG_REFUSED = Counter(
    "modeldock_request_log_refused",
    "Request-log rows the database refused even one by one; "
    "set aside (and logged) so that the others are written.",
)

# Live quality (app/monitoring/gauges.py sets them when /metrics is read, from a
# short per-worker cache). window: "hour" = rows predicted in the last 60 minutes,
# "day" = in the last 24 hours. NaN when there is no feedback for the window.
LIVE_ACCURACY = Gauge(
    "modeldock_live_accuracy",
    "Share of predicted rows whose label matches the feedback (classifiers).",
    ["model", "version", "window"],
    multiprocess_mode="mostrecent",
)
LIVE_MAE = Gauge(
    "modeldock_live_mae",
    "Mean absolute error of predicted rows against the feedback (regressors).",
    ["model", "version", "window"],
    multiprocess_mode="mostrecent",
)
LIVE_SAMPLES = Gauge(
    "modeldock_live_feedback_rows",
    "Predicted rows with feedback behind modeldock_live_accuracy / _mae.",
    ["model", "version", "window"],
    multiprocess_mode="mostrecent",
)
CANARY_ACCURACY_DELTA = Gauge(
    "modeldock_canary_accuracy_delta",
    "Canary accuracy minus stable accuracy over the last 24 hours (classifiers).",
    ["model"],
    multiprocess_mode="mostrecent",
)
CANARY_MAE_DELTA = Gauge(
    "modeldock_canary_mae_delta",
    "Canary MAE minus stable MAE over the last 24 hours (regressors).",
    ["model"],
    multiprocess_mode="mostrecent",
)
# For alert rules (deploy/prometheus/): the sample behind the two deltas, and the
# verdict of the page (1 better, 0 no clear difference, -1 worse; NaN while either
# side has too little feedback).
CANARY_SAMPLES = Gauge(
    "modeldock_canary_feedback_rows",
    "Rows with feedback behind the canary deltas, per side (canary or stable).",
    ["model", "side"],
    multiprocess_mode="mostrecent",
)
CANARY_VERDICT = Gauge(
    "modeldock_canary_verdict",
    "Canary vs stable over the last 24 hours: 1 better, 0 no clear difference, "
    "-1 worse (95 % interval of the difference); NaN: not enough feedback.",
    ["model"],
    multiprocess_mode="mostrecent",
)


def observe_request(
    model: str | None, version: int | None, status: int, seconds: float
) -> None:
    """Count one prediction request and its latency."""
    REQUESTS.labels(
        model or "", "" if version is None else str(version), str(status)
    ).inc()
    LATENCY.labels(model or "").observe(seconds)


def count_predictions(model: str, labels: np.ndarray) -> None:
    """Count predicted rows per class."""
    if labels.size <= 64:  # a few rows: a dict is five times faster than np.unique
        counted = Tally(labels.ravel().tolist()).items()
    else:
        values, counts = np.unique(labels, return_counts=True)
        counted = zip(values.tolist(), counts.tolist(), strict=True)
    for value, count in counted:
        PREDICTIONS.labels(model, str(value)).inc(count)


def exposition() -> tuple[bytes, str]:
    """The text a Prometheus scrape receives, summed over every worker."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def scrape_allowed(
    remote_addr: str | None,
    authorization: str | None,
    token: str | None,
    networks: list[str],
) -> bool:
    """True for the metrics token (Bearer) or a client inside an allowed network."""
    if (
        token
        and authorization
        and authorization[:7].lower() == "bearer "
        and hmac.compare_digest(authorization[7:].strip().encode(), token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def init_app(app) -> None:
    """Count every 429 the rate limiter answers, whichever route it guards."""

    @app.after_request
    def count_rate_limited(response):
        if response.status_code == 429:
            RATE_LIMITED.labels(request.endpoint or "").inc()
        return response
