"""Request bodies → a float matrix ordered like the model's features, or a clear
error."""

from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np
import orjson

from app.web.errors import APIError, quote


def parse_json(raw: bytes, content_type: str | None) -> Any:
    """Decode a JSON body; 415 for another content type, 400 for broken JSON."""
    if not content_type or content_type.split(";")[0].strip().lower() not in {
        "application/json",
        "application/vnd.api+json",
    }:
        raise APIError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
            "Content-Type",
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # NaN and Infinity are not JSON, but Python clients send them
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise APIError(
            400, "malformed_json", f"the body is not valid JSON: {exc}", "body"
        ) from exc


def _bad_cell(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, numbers.Real)


def _to_matrix(rows: list, field: str, n_features: int) -> np.ndarray:
    """Convert row lists to float64, naming the first offending cell on failure."""
    try:
        # Let numpy infer the type: strings, None or ragged rows give a
        # non-numeric dtype (or an error) instead of being coerced silently.
        inferred = np.array(rows)
    except (ValueError, TypeError):
        inferred = None
    if inferred is None or inferred.ndim != 2 or inferred.dtype.kind not in "iuf":
        _explain(rows, field, n_features)
    if inferred.shape[1] != n_features:
        raise APIError(
            400,
            "wrong_feature_count",
            f"expected {n_features} features per row, got {inferred.shape[1]}",
            f"{field}[0]",
        )
    return inferred.astype(np.float64, copy=False)


def _explain(rows: list, field: str, n_features: int) -> None:
    """Walk the rows to find and report the first problem."""
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise APIError(
                400,
                "invalid_row",
                "each row must be a list of numbers",
                f"{field}[{i}]",
            )
        if len(row) != n_features:
            raise APIError(
                400,
                "wrong_feature_count",
                f"expected {n_features} features, got {len(row)}",
                f"{field}[{i}]",
            )
        for j, value in enumerate(row):
            if _bad_cell(value):
                raise APIError(
                    400,
                    "non_numeric_value",
                    f"value {quote(value)} is not a number",
                    f"{field}[{i}][{j}]",
                )
    raise APIError(400, "invalid_rows", "rows could not be read as numbers", field)


def _check_batch(count: int, field: str, max_rows: int) -> None:
    if count == 0:
        raise APIError(400, "empty_batch", "send at least one row", field)
    if count > max_rows:
        raise APIError(
            413,
            "batch_too_large",
            f"{count} rows exceed the limit of {max_rows} per request",
            field,
        )


def rows_by_name(records: list, names: list[str], field: str) -> list[list]:
    """Order dict rows by the model's feature names; report missing or unknown ones."""
    known = set(names)
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise APIError(
                400, "invalid_row", "mix of named and positional rows", f"{field}[{i}]"
            )
        if record.keys() != known:
            unknown = sorted(set(record) - known)
            if unknown:
                raise APIError(
                    400,
                    "unknown_feature",
                    f"unknown feature(s) {quote(unknown)}; expected {names}",
                    f"{field}[{i}].{unknown[0]}",
                )
            missing = [n for n in names if n not in record]
            raise APIError(
                400,
                "missing_feature",
                f"missing feature(s) {missing}",
                f"{field}[{i}].{missing[0]}",
            )
        out.append([record[n] for n in names])
    return out


def columns_by_name(columns: dict, names: list[str], field: str) -> list[list]:
    """Turn {"feature": [values…]} into rows ordered by the model's features."""
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise APIError(
            400,
            "unknown_feature",
            f"unknown feature(s) {quote(unknown)}; expected {names}",
            f"{field}.{unknown[0]}",
        )
    missing = [n for n in names if n not in columns]
    if missing:
        raise APIError(
            400,
            "missing_feature",
            f"missing feature(s) {missing}",
            f"{field}.{missing[0]}",
        )
    lengths = set()
    for name in names:
        if not isinstance(columns[name], list):
            raise APIError(
                400,
                "invalid_column",
                "each input must be a list of values",
                f"{field}.{name}",
            )
        lengths.add(len(columns[name]))
    if len(lengths) > 1:
        raise APIError(
            400, "ragged_columns", "all inputs must have the same length", field
        )
    return [list(values) for values in zip(*(columns[n] for n in names), strict=True)]


def matrix_from_rows(rows: list, schema: dict, field: str, max_rows: int) -> np.ndarray:
    """Validate positional or named rows and return the float matrix."""
    if not isinstance(rows, list):
        raise APIError(400, "invalid_instances", "must be a list of rows", field)
    _check_batch(len(rows), field, max_rows)
    names = schema["feature_names"]
    if isinstance(rows[0], dict):
        rows = rows_by_name(rows, names, field)
    elif schema["n_features"] == 1 and not isinstance(rows[0], list):
        rows = [[value] for value in rows]  # a list of scalars for one feature
    matrix = _to_matrix(rows, field, schema["n_features"])
    check_finite(matrix, schema, field)
    return matrix


def matrix_from_columns(columns: Any, schema: dict, field: str, max_rows: int):
    """Validate columnar inputs ({"feature": [...]}) and return the float matrix."""
    if isinstance(columns, list):  # a row-major tensor given as "inputs"
        return matrix_from_rows(columns, schema, field, max_rows)
    if not isinstance(columns, dict) or not columns:
        raise APIError(400, "invalid_inputs", "must map feature names to lists", field)
    rows = columns_by_name(columns, schema["feature_names"], field)
    return matrix_from_rows(rows, schema, field, max_rows)


def check_finite(matrix: np.ndarray, schema: dict, field: str) -> None:
    """Refuse infinities always and NaN unless the model handles missing values."""
    finite = np.isfinite(matrix)
    if finite.all():
        return
    bad = np.isinf(matrix) if schema.get("allow_nan") else ~finite
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise APIError(
            400,
            "non_finite_value",
            f"value {matrix[i, j]} is not allowed for this model",
            f"{field}[{i}][{j}]",
        )


def matrix_from_table(
    columns: Any, data: Any, schema: dict, field: str, max_rows: int
) -> np.ndarray:
    """Validate a table (a header of column names, rows of values: a pandas
    ``split`` frame, a CSV file) and return the matrix in the model's feature order.

    Columns are matched to the model's feature names in any order; an unknown or
    missing one is an error. A model fitted without feature names takes as many
    columns as it has features, in the order given (their names are not its own).
    """
    if not isinstance(columns, list) or not all(
        isinstance(c, (str, int)) and not isinstance(c, bool) for c in columns
    ):
        raise APIError(
            400,
            "invalid_columns",
            "columns must be a list of names",
            f"{field}.columns",
        )
    columns = [str(c) for c in columns]  # pandas numbers unnamed columns 0, 1, …
    names = schema["feature_names"]
    if len(set(columns)) != len(columns):
        twice = next(c for i, c in enumerate(columns) if c in columns[:i])
        raise APIError(
            400,
            "duplicate_column",
            f"column {quote(twice)} appears twice",
            f"{field}.columns",
        )
    if set(columns) == set(names):
        order = [columns.index(name) for name in names]
    elif not schema.get("named_features", True) and len(columns) == len(names):
        order = list(range(len(names)))  # positional, as the model was fitted
    else:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise APIError(
                400,
                "unknown_feature",
                f"unknown column(s) {quote(unknown)}; expected {names}",
                f"{field}.columns",
            )
        missing = [n for n in names if n not in columns]
        raise APIError(
            400, "missing_feature", f"missing column(s) {missing}", f"{field}.columns"
        )
    if not isinstance(data, (list, np.ndarray)):
        raise APIError(
            400, "invalid_rows", "data must be a list of rows", f"{field}.data"
        )
    _check_batch(len(data), f"{field}.data", max_rows)
    matrix = _to_matrix(data, f"{field}.data", len(columns))
    check_finite(matrix, schema, f"{field}.data")
    if order != list(range(len(order))):
        matrix = np.ascontiguousarray(matrix[:, order])
    return matrix
