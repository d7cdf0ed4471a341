"""Rows recovered from logged request bodies (MODELDOCK_LOG_PAYLOADS), for drift
windows computed from raw values.

The request log keeps the body each protocol received: ``instances`` (rows, named
rows or scalars), ``inputs`` (columns by name, rows, or Open Inference tensors) or
the tutorial's ``features``. A value the log redacted becomes +inf (never a valid
input, so it marks "not counted"); a null becomes NaN (missing). A body that
cannot be read as rows of the model's features is skipped.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import RequestLog
from app.observability.privacy import REDACTED


def logged_rows(
    model: str, number: int, names: tuple[str, ...], since: datetime, until: datetime
) -> list[tuple[datetime, list[float]]]:
    """(time, row) of every logged input row of a version in [since, until)."""
    out: list[tuple[datetime, list[float]]] = []
    for created_at, body in db.session.execute(
        select(RequestLog.created_at, RequestLog.payload).where(
            RequestLog.model_name == model,
            RequestLog.version == number,
            RequestLog.status_code == 200,
            RequestLog.payload.is_not(None),
            RequestLog.created_at >= since,
            RequestLog.created_at < until,
        )
    ):
        for row in body_rows(body, list(names)):
            out.append((created_at, row))
    return out


def body_rows(body: Any, names: list[str]) -> list[list[float]]:
    """The rows of a logged body, ordered like ``names``; [] if unreadable."""
    if not isinstance(body, dict):
        return []
    if "instances" in body:
        rows = _rows(body["instances"], names)
    elif "features" in body:
        features = body["features"]
        single = (
            isinstance(features, list)
            and features
            and not isinstance(features[0], list)
        )
        rows = _rows([features] if single else features, names)
    elif isinstance(body.get("inputs"), dict):
        rows = _columns(body["inputs"], names)
    elif isinstance(body.get("inputs"), list):
        inputs = body["inputs"]
        tensors = inputs and all(isinstance(t, dict) and "data" in t for t in inputs)
        rows = _tensors(inputs, names) if tensors else _rows(inputs, names)
    else:
        rows = None
    return rows or []


def _cell(value: Any) -> float | None:
    if value == REDACTED:
        return math.inf
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _row(values: list, names: list[str]) -> list[float] | None:
    if len(values) != len(names):
        return None
    cells = [_cell(v) for v in values]
    return None if any(c is None for c in cells) else cells


def _rows(rows: Any, names: list[str]) -> list[list[float]] | None:
    if not isinstance(rows, list):
        return None
    out = []
    for row in rows:
        if isinstance(row, dict):
            row = [row.get(n) for n in names] if set(row) == set(names) else None
        elif not isinstance(row, list) and len(names) == 1:
            row = [row]
        parsed = _row(row, names) if isinstance(row, list) else None
        if parsed is None:
            return None
        out.append(parsed)
    return out


def _columns(columns: dict, names: list[str]) -> list[list[float]] | None:
    if set(columns) != set(names):
        return None
    values = [columns[n] for n in names]
    if not all(isinstance(v, list) for v in values):
        return None
    if len({len(v) for v in values}) != 1:
        return None
    return _rows([list(row) for row in zip(*values, strict=True)], names)


def _tensors(tensors: list[dict], names: list[str]) -> list[list[float]] | None:
    """Open Inference: one tensor of shape [rows, features] or one per feature."""
    if len(tensors) == 1:
        tensor = tensors[0]
        data = _flat(tensor.get("data"))
        if data is None or len(data) % len(names):
            return None
        width = len(names)
        return _rows([data[i : i + width] for i in range(0, len(data), width)], names)
    by_name = {t.get("name"): _flat(t.get("data")) for t in tensors}
    if set(by_name) != set(names) or any(v is None for v in by_name.values()):
        return None
    return _columns(by_name, names)


def _flat(data: Any) -> list | None:
    if not isinstance(data, list):
        return None
    out: list = []
    for item in data:
        if isinstance(item, list):
            inner = _flat(item)
            if inner is None:
                return None
            out.extend(inner)
        else:
            out.append(item)
    return out
