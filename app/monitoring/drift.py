"""Drift per feature and window: reference distributions recorded at upload, live
windows from the sketch (default) or from logged payloads, and PSI with a
two-sample test per feature, computed once per window change and stored.

The statistics of a window are stored (``DriftStat``) and recomputed only when the
window changed: the sketch's flush bumps a window's generation, and ``refresh``
recomputes the windows whose statistics are older than it (in each worker's
background thread, and on demand before a report). The payload path recomputes
a window that was still open when last computed, at most every
``MODELDOCK_DRIFT_REFRESH_SECONDS``. So a report reads stored rows: the admin page of
30 features × 30 days runs a fixed handful of queries.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from flask import current_app
from sqlalchemy import delete, func, insert, select

from app.extensions import db
from app.models import (
    DriftCount,
    DriftReference,
    DriftStat,
    DriftWindow,
    MLModel,
    ModelVersion,
)
from app.models._time import utcnow
from app.monitoring import payloads, stats
from app.observability import sketch
from app.observability.reference import BinSpec, describe_rows, rows_from_csv
from app.observability.sketch import day_of, window_end
from app.registry.service import alias_version, get_version
from app.web.errors import APIError

KINDS = ("hour", "day")
SHOWN = {"hour": 48, "day": 30}  # windows a report covers: 48 hours, 30 days


def attach_reference(
    version: ModelVersion, csv_data: bytes | None = None, from_sample: bool = False
) -> DriftReference | None:
    """Record the reference distributions of ``version`` from a CSV of its training
    or validation rows, or from the sample stored with it (``from_sample``)."""
    if csv_data is None and not from_sample:
        return None
    names = version.input_schema["feature_names"]
    if csv_data is not None:
        rows, source = rows_from_csv(csv_data, names), "csv"
    else:
        rows, source = np.asarray(version.sample["rows"], dtype=float), "sample"
    features = describe_rows(rows, names)
    reference = DriftReference(
        version_id=version.id,
        source=source,
        rows=len(rows),
        values=[f.pop("values", []) for f in features],
        features=features,
    )
    db.session.merge(reference)
    db.session.flush()
    return reference


def refresh(version_id: int | None = None) -> int:
    """Recompute the sketch windows whose counts changed; return how many."""
    query = select(DriftWindow).where(DriftWindow.generation != DriftWindow.computed)
    if version_id is not None:
        query = query.where(DriftWindow.version_id == version_id)
    windows = db.session.scalars(query).all()
    specs: dict[int, tuple[DriftReference, BinSpec] | None] = {}
    for window in windows:
        if window.version_id not in specs:
            specs[window.version_id] = _spec(window.version_id)
        if specs[window.version_id] is None:
            continue
        reference, spec = specs[window.version_id]
        generation = window.generation  # counts flushed after this: stale again
        vector = _window_counts(spec, window.kind, window.start)
        live = [spec.feature_counts(vector, j) for j in range(len(spec.names))]
        _store(window, reference, live, None)
        window.computed, window.computed_at = generation, utcnow()
    db.session.flush()
    return len(windows)


def refresh_from_payloads(version: ModelVersion, kind: str, now: datetime) -> int:
    """Recompute the windows of ``kind`` from logged payloads: those never computed
    since they closed, the open one at most every MODELDOCK_DRIFT_REFRESH_SECONDS."""
    found = _spec(version.id)
    if found is None:
        return 0
    reference, spec = found
    starts = _starts(kind, now)
    known = {
        w.start: w
        for w in db.session.scalars(
            select(DriftWindow).where(
                DriftWindow.version_id == version.id,
                DriftWindow.kind == kind,
                DriftWindow.start >= starts[-1],
            )
        )
    }
    cache = timedelta(seconds=current_app.config["MODELDOCK_DRIFT_REFRESH_SECONDS"])
    due = [
        start
        for start in starts
        if start not in known
        or known[start].computed_at is None
        or (
            known[start].computed_at < window_end(kind, start)
            and now - known[start].computed_at >= cache
        )
    ]
    if not due:
        return 0
    logged = payloads.logged_rows(
        version.model.name, version.number, spec.names, min(due), now
    )
    for start in due:
        end = window_end(kind, start)
        rows = [row for moment, row in logged if start <= moment < end]
        matrix = np.asarray(rows, dtype=float).reshape(len(rows), len(spec.names))
        cells = spec.cells(matrix)
        redacted = np.isinf(matrix)
        vector = np.bincount(  # fields the log redacted are not counted
            cells[~redacted], minlength=len(spec.names) * spec.slots
        )
        live = [spec.feature_counts(vector, j) for j in range(len(spec.names))]
        raw = [matrix[~redacted[:, j], j] for j in range(len(spec.names))]
        window = known.get(start) or DriftWindow(
            version_id=version.id, kind=kind, start=start, generation=0, computed=0
        )
        db.session.add(window)
        window.rows, window.computed_at = len(rows), now
        _store(window, reference, live, raw)
    db.session.flush()
    return len(due)


def report(name: str, kind: str, number: int | None = None) -> dict[str, Any]:
    """Drift of a model's version (its stable one unless ``number``) per feature
    over the last windows of ``kind``, newest first, after refreshing what changed."""
    if kind not in KINDS:
        raise APIError(400, "invalid_window", "window must be hour or day", "window")
    model = db.session.scalar(select(MLModel).where(MLModel.name == name))
    if model is None:
        raise APIError(404, "model_not_found", f"no model named '{name}'", "model")
    version = _version(model, number)
    body: dict[str, Any] = {
        "model": name,
        "version": None if version is None else version.number,
        "window": kind,
        "source": current_app.config["MODELDOCK_DRIFT_SOURCE"],
        "reference": None,
        "windows": [],
    }
    if version is None:
        return body | {"message": f"model '{name}' has no active version"}
    reference = db.session.get(DriftReference, version.id)
    if reference is None:
        return body | {
            "message": f"version {version.number} has no reference sample, so its "
            "drift cannot be measured; upload the version with a reference CSV "
            "(see the drift documentation)"
        }
    body["reference"] = {
        "rows": reference.rows,
        "source": reference.source,
        "features": [f["name"] for f in reference.features],
    }
    now = utcnow()
    source = body["source"]
    if source == "payloads":
        if not current_app.config["MODELDOCK_LOG_PAYLOADS"]:
            return body | {
                "message": "MODELDOCK_DRIFT_SOURCE is payloads but "
                "MODELDOCK_LOG_PAYLOADS is off: no inputs are logged"
            }
        refresh_from_payloads(version, kind, now)
    elif source == "sketch":
        refresh(version.id)
    else:
        return body | {"message": "drift monitoring is off (MODELDOCK_DRIFT_SOURCE)"}
    body["windows"] = _windows(version.id, kind, reference, _starts(kind, now)[-1])
    if not body["windows"]:
        body["message"] = "no predictions seen in these windows yet"
    return body


def _version(model: MLModel, number: int | None) -> ModelVersion | None:
    """The version asked for (404 if it does not exist), else the stable one."""
    if number is not None:
        return get_version(model, number)
    return alias_version(model, "stable")


def _windows(
    version_id: int, kind: str, reference: DriftReference, since: datetime
) -> list[dict[str, Any]]:
    """Stored statistics of the windows since ``since``: two queries in all."""
    names = [f["name"] for f in reference.features]
    windows = db.session.scalars(
        select(DriftWindow)
        .where(
            DriftWindow.version_id == version_id,
            DriftWindow.kind == kind,
            DriftWindow.start >= since,
            DriftWindow.rows > 0,
        )
        .order_by(DriftWindow.start.desc())
    ).all()
    by_window: dict[datetime, list[dict[str, Any]]] = {w.start: [] for w in windows}
    for stat in db.session.scalars(
        select(DriftStat)
        .where(
            DriftStat.version_id == version_id,
            DriftStat.kind == kind,
            DriftStat.start >= since,
        )
        .order_by(DriftStat.start, DriftStat.feature)
    ):
        if stat.start in by_window and stat.feature < len(names):
            by_window[stat.start].append(
                {
                    "feature": names[stat.feature],
                    "rows": stat.rows,
                    "psi": stat.psi,
                    "pvalue": stat.pvalue,
                    "test": stat.test,
                    "verdict": stats.verdict(stat.psi, stat.pvalue, stat.rows),
                }
            )
    return [
        {"start": w.start, "rows": w.rows, "features": by_window[w.start]}
        for w in windows
    ]


def _spec(version_id: int) -> tuple[DriftReference, BinSpec] | None:
    reference = db.session.get(DriftReference, version_id)
    if reference is None:
        return None
    return reference, BinSpec.build(version_id, reference.features)


def _starts(kind: str, now: datetime) -> list[datetime]:
    """The starts of the windows a report covers, newest first."""
    if kind == "hour":
        first = now.replace(minute=0, second=0, microsecond=0)
        return [first - timedelta(hours=i) for i in range(SHOWN["hour"])]
    first = day_of(now)
    return [first - timedelta(days=i) for i in range(SHOWN["day"])]


def _window_counts(spec: BinSpec, kind: str, start: datetime) -> np.ndarray:
    """The sketch's counts of one window, summed over its hours and workers."""
    vector = np.zeros(len(spec.names) * spec.slots, dtype=np.int64)
    for feature, slot, count in db.session.execute(
        select(DriftCount.feature, DriftCount.bin, func.sum(DriftCount.count))
        .where(
            DriftCount.version_id == spec.version_id,
            DriftCount.hour >= start,
            DriftCount.hour < window_end(kind, start),
        )
        .group_by(DriftCount.feature, DriftCount.bin)
    ):
        if feature < len(spec.names) and slot < spec.slots:
            vector[feature * spec.slots + slot] = int(count)
    return vector


def _store(
    window: DriftWindow,
    reference: DriftReference,
    live: list[np.ndarray],
    raw: list[np.ndarray] | None,
) -> None:
    """Replace the window's statistics: PSI, and chi-square on the bins or KS on
    the raw values (numeric features, payload path)."""
    db.session.execute(
        delete(DriftStat).where(
            DriftStat.version_id == window.version_id,
            DriftStat.kind == window.kind,
            DriftStat.start == window.start,
        )
    )
    rows = []
    for j, (feature, counts) in enumerate(zip(reference.features, live, strict=True)):
        expected = np.asarray(feature["counts"], dtype=float)
        if raw is not None and feature["kind"] == "numeric":
            test = "ks"
            pvalue = stats.ks(np.asarray(reference.values[j], dtype=float), raw[j])
        else:
            test, pvalue = "chi2", stats.chi_square(expected, counts)
        rows.append(
            {
                "version_id": window.version_id,
                "kind": window.kind,
                "start": window.start,
                "feature": j,
                "rows": int(counts.sum()),
                "psi": stats.psi(expected, counts.astype(float)),
                "pvalue": pvalue,
                "test": test,
            }
        )
    # One INSERT for every feature, not an ORM object each (a third of a refresh,
    # which every worker runs after its flushes, once the statistics were quick).
    db.session.execute(insert(DriftStat), rows)


def latest(days: int = 2) -> list[dict[str, Any]]:
    """The newest hour and day statistics of every version with windows in the last
    ``days`` days, for the Prometheus gauges (three queries)."""
    since = day_of(utcnow()) - timedelta(days=days - 1)
    newest = (
        select(
            DriftWindow.version_id,
            DriftWindow.kind,
            func.max(DriftWindow.start).label("start"),
        )
        .where(DriftWindow.start >= since, DriftWindow.rows > 0)
        .group_by(DriftWindow.version_id, DriftWindow.kind)
        .subquery()
    )
    rows = db.session.execute(
        select(DriftStat, MLModel.name, ModelVersion.number)
        .join(
            newest,
            (newest.c.version_id == DriftStat.version_id)
            & (newest.c.kind == DriftStat.kind)
            & (newest.c.start == DriftStat.start),
        )
        .join(ModelVersion, ModelVersion.id == DriftStat.version_id)
        .join(MLModel, MLModel.id == ModelVersion.model_id)
    ).all()
    names = {
        version_id: [f["name"] for f in features]
        for version_id, features in db.session.execute(
            select(DriftReference.version_id, DriftReference.features).where(
                DriftReference.version_id.in_({stat.version_id for stat, *_ in rows})
            )
        )
    }
    return [
        {
            "model": model,
            "version": str(number),
            "feature": names[stat.version_id][stat.feature],
            "window": stat.kind,
            "psi": stat.psi,
            "pvalue": stat.pvalue,
        }
        for stat, model, number in rows
        if stat.feature < len(names.get(stat.version_id, ()))
    ]


def refresh_in_background(app) -> None:
    """After a sketch flush: recompute the stale windows of every version, at most
    every MODELDOCK_DRIFT_REFRESH_SECONDS (each worker; the work is idempotent)."""
    every = app.config["MODELDOCK_DRIFT_REFRESH_SECONDS"]
    last = [float("-inf")]

    def after_flush() -> None:
        if time.monotonic() - last[0] < every:
            return
        last[0] = time.monotonic()
        refresh()
        db.session.commit()

    sketch.sketch_of(app).after_flush = after_flush


def init_app(app) -> None:
    sketch.init_app(app)
    refresh_in_background(app)
