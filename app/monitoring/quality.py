"""Live quality per version: logged predictions joined with feedback, per hour or
day, each figure with its 95 % interval and sample size (``intervals``).

The join is SQL: feedback meets its request log on (model, request id) and picks
the predicted label or value, and the class probabilities, of its row out of the
log's JSON. The figures are then counted per version and period in Python.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, and_, cast, func, literal, select

from app.extensions import db
from app.models import Feedback, MLModel, RequestLog
from app.models._time import utcnow
from app.monitoring import intervals
from app.registry import describe
from app.registry.service import get_model
from app.web.errors import APIError

# Window → (the length of one period, how many periods a report covers).
WINDOWS = {"hour": (timedelta(hours=1), 24), "day": (timedelta(days=1), 30)}
# Fewer rows with feedback than this on either side: no verdict on the canary.
MIN_VERDICT_ROWS = 30
# The smallest probability log-loss takes (as scikit-learn: float64 epsilon).
EPSILON = float.fromhex("0x1p-52")


@dataclass(frozen=True)
class Outcome:
    """One predicted row with its truth."""

    model: str
    version: int
    at: datetime  # when it was predicted
    predicted: Any
    truth: Any  # the true label (classifiers) or value (regressors)
    probabilities: list | None


def _row_item(key: str):
    """SQL for ``request_logs.predictions[key][feedback.row]`` as JSON."""
    column = RequestLog.predictions
    if db.session.get_bind().dialect.name == "postgresql":
        return column.op("->", return_type=JSON)(cast(literal(key), String)).op(
            "->", return_type=JSON
        )(Feedback.row)
    path = literal(f"$.{key}[") + cast(Feedback.row, String) + literal("]")
    return func.json_quote(func.json_extract(column, path), type_=JSON)


def outcomes(since: datetime, model_name: str | None = None) -> list[Outcome]:
    """Rows predicted since ``since`` that have feedback (of one model or all).

    Ordered by feedback, so that the database walks the feedback and finds each
    one's log by request id: ordered by the log, SQLite read every request log of
    the window instead (60 ms at 200,000 rows, on every refresh of the gauges)."""
    statement = (
        select(
            Feedback.id,
            RequestLog.id,
            RequestLog.model_name,
            RequestLog.version,
            RequestLog.created_at,
            _row_item("y"),
            _row_item("p"),
            Feedback.label,
            Feedback.value,
        )
        .join(
            RequestLog,
            and_(
                RequestLog.model_name == Feedback.model_name,
                RequestLog.request_id == Feedback.request_id,
            ),
        )
        .where(
            RequestLog.created_at >= since,
            RequestLog.status_code == 200,
            RequestLog.predictions.is_not(None),
        )
        .order_by(Feedback.id)
    )
    if model_name is not None:
        statement = statement.where(Feedback.model_name == model_name)
    latest: dict[int, tuple[int, Outcome]] = {}  # a reused request id: its latest
    for fid, log_id, model, version, at, y, p, label, value in db.session.execute(
        statement
    ):
        if y is not None and (fid not in latest or latest[fid][0] < log_id):
            truth = value if label is None else label
            latest[fid] = (log_id, Outcome(model, version, at, y, truth, p))
    return [outcome for _, outcome in sorted(latest.values(), key=lambda e: e[0])]


def classification(rows: list[Outcome], classes: list) -> dict[str, Any]:
    """Accuracy, precision and recall per class (Wilson) and log-loss (normal)."""
    n = len(rows)
    correct = sum(1 for r in rows if r.predicted == r.truth)
    per_class = []
    for label in classes:
        predicted = [r for r in rows if r.predicted == label]
        actual = sum(1 for r in rows if r.truth == label)
        hits = sum(1 for r in predicted if r.truth == label)
        if predicted or actual:
            per_class.append(
                {
                    "class": label,
                    "precision": intervals.wilson(hits, len(predicted)),
                    "recall": intervals.wilson(hits, actual),
                }
            )
    losses = [
        -math.log(min(1.0, max(EPSILON, r.probabilities[classes.index(r.truth)])))
        for r in rows
        if r.probabilities is not None
        and len(r.probabilities) == len(classes)
        and r.truth in classes
    ]
    return {
        "n": n,
        "accuracy": intervals.wilson(correct, n),
        "log_loss": intervals.mean(losses, floor=0.0) if losses else None,
        "classes": per_class,
    }


def regression(rows: list[Outcome]) -> dict[str, Any]:
    """MAE and RMSE, each with its normal-approximation interval."""
    errors = [float(r.predicted) - float(r.truth) for r in rows]
    return {
        "n": len(rows),
        "mae": intervals.mean([abs(e) for e in errors], floor=0.0),
        "rmse": intervals.root_mean([e * e for e in errors]),
    }


def summarise(task: str, rows: list[Outcome], classes: list) -> dict[str, Any]:
    if task == "classification":
        return classification(rows, classes)
    return regression(rows)


def compare(task: str, stable: list[Outcome], canary: list[Outcome]) -> dict[str, Any]:
    """Is the canary better than stable? canary − stable in accuracy (Newcombe) or
    in MAE (Welch normal), with the verdict the interval supports."""
    if task == "classification":
        metric = "accuracy"
        first = intervals.wilson(
            sum(r.predicted == r.truth for r in canary), len(canary)
        )
        second = intervals.wilson(
            sum(r.predicted == r.truth for r in stable), len(stable)
        )
        difference = intervals.newcombe(first, second)
        better = difference["low"] is not None and difference["low"] > 0
        worse = difference["high"] is not None and difference["high"] < 0
    else:
        metric = "mae"
        errors = {
            side: [abs(float(r.predicted) - float(r.truth)) for r in rows]
            for side, rows in (("canary", canary), ("stable", stable))
        }
        first, second = (intervals.mean(errors[s]) for s in ("canary", "stable"))
        difference = intervals.difference_of_means(errors["canary"], errors["stable"])
        better = difference["high"] is not None and difference["high"] < 0
        worse = difference["low"] is not None and difference["low"] > 0
    if min(len(stable), len(canary)) < MIN_VERDICT_ROWS:
        verdict = "not enough feedback"
    else:
        verdict = "better" if better else "worse" if worse else "no clear difference"
    return {
        "metric": metric,
        "canary": first,
        "stable": second,
        "difference": difference,
        "n_canary": len(canary),
        "n_stable": len(stable),
        "verdict": verdict,
    }


def period_start(at: datetime, window: str) -> datetime:
    """The hour or day (UTC) ``at`` falls in."""
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if window == "day" else at


def by_version(rows: Iterable[Outcome]) -> dict[int, list[Outcome]]:
    grouped: dict[int, list[Outcome]] = defaultdict(list)
    for row in rows:
        grouped[row.version].append(row)
    return grouped


def report(name: str, window: str = "hour", now: datetime | None = None) -> dict:
    """The quality of each version of ``name`` per period of ``window`` (the last
    24 hours or 30 days), and the canary comparison over the same span."""
    if window not in WINDOWS:
        raise APIError(
            400, "invalid_window", f"window must be one of {sorted(WINDOWS)}", "window"
        )
    model = get_model(name)
    step, count = WINDOWS[window]
    until = period_start(now or utcnow(), window) + step
    since = until - step * count
    classes = {
        v.number: list(v.input_schema.get("classes") or []) for v in model.versions
    }
    aliases = describe.aliases_of(model)
    alias_of = {a["version"]: alias for alias, a in aliases.items()}
    versions = []
    grouped = by_version(outcomes(since, name))
    for number in sorted(grouped, reverse=True):
        rows = grouped[number]
        periods: dict[datetime, list[Outcome]] = defaultdict(list)
        for row in rows:
            periods[period_start(row.at, window)].append(row)
        versions.append(
            {
                "version": number,
                "alias": alias_of.get(number),
                "total": summarise(model.task, rows, classes.get(number, [])),
                "periods": [
                    {"start": start}
                    | summarise(model.task, periods[start], classes.get(number, []))
                    for start in sorted(periods, reverse=True)
                ],
            }
        )
    canary = None
    if "canary" in aliases and "stable" in aliases:
        canary = {
            "stable_version": aliases["stable"]["version"],
            "canary_version": aliases["canary"]["version"],
        } | compare(
            model.task,
            grouped.get(aliases["stable"]["version"], []),
            grouped.get(aliases["canary"]["version"], []),
        )
    return {
        "model": name,
        "task": model.task,
        "window": window,
        "since": since,
        "until": until,
        "intervals": {
            "level": 0.95,
            "proportions": "wilson",
            "difference_of_proportions": "newcombe",
            "means": "normal",
        },
        "versions": versions,
        "canary": canary,
    }


def live_models() -> list[MLModel]:
    """Models whose quality can be measured (classifiers and regressors)."""
    return list(
        db.session.scalars(
            select(MLModel).where(MLModel.task.in_(("classification", "regression")))
        )
    )
