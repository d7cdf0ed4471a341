"""MLflow's scoring protocol (what ``mlflow models serve`` answers): JSON bodies in
its four formats (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``) and CSV → the float matrix in the model's feature order; predictions →
``{"predictions": [...]}``; errors → MLflow's ``{"error_code", "message"}``."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from app.serving.inputs import (
    matrix_from_columns,
    matrix_from_rows,
    matrix_from_table,
    parse_json,
)
from app.serving.predict import Prediction
from app.web.errors import APIError, mlflow_error, quote

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON_TYPE, CSV_TYPE = "application/json", "text/csv"
# ModelDock codes of a body MLflow could not read at all: BAD_REQUEST, as MLflow's
# parser says. Other 400s are values the model refuses: INVALID_PARAMETER_VALUE, as
# MLflow's schema enforcement says ("Failed to enforce schema ...").
UNREADABLE = frozenset(
    {
        "malformed_json",
        "malformed_csv",
        "invalid_body",
        "unsupported_media_type",
        "payload_too_large",
        "bad_request",
    }
)


def error(message: str, status: int, headers=None, code=None, field=None):
    """A ModelDock error in MLflow's shape, with MLflow's code for what went wrong."""
    error_code = None
    if status in (400, 413) and code not in UNREADABLE:
        error_code = "INVALID_PARAMETER_VALUE"
    elif status in (413, 415, 422):  # 422: "an unexpected error while evaluating"
        error_code = "BAD_REQUEST"
    return mlflow_error(message, status, headers, code, field, error_code)


def media_type(header: str | None) -> str:
    """``application/json`` or ``text/csv``; 415 for another type or a charset other
    than UTF-8, as MLflow's scoring server answers."""
    mime, *parameters = [part.strip() for part in (header or "").split(";")]
    mime = mime.lower()
    if mime not in (JSON_TYPE, CSV_TYPE):
        raise APIError(
            415,
            "unsupported_media_type",
            f"send Content-Type: {JSON_TYPE} or {CSV_TYPE}, not {quote(mime or None)}",
            "Content-Type",
        )
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset" or value.strip(' "').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise APIError(
                415,
                "unsupported_media_type",
                f"unsupported Content-Type parameter {quote(parameter)}: "
                "the only one read is charset=utf-8",
                "Content-Type",
            )
    return mime


def request_matrix(
    raw: bytes, content_type: str | None, schema: dict, max_rows: int
) -> tuple[np.ndarray, Any, str]:
    """Return (matrix, the JSON body or None for CSV, the format's name)."""
    if media_type(content_type) == CSV_TYPE:
        columns, data = parse_csv(raw, max_rows)
        return matrix_from_table(columns, data, schema, "csv", max_rows), None, "csv"
    body = parse_json(raw, JSON_TYPE)
    if not isinstance(body, dict):
        raise APIError(
            400,
            "invalid_body",
            f"the body must be a JSON object with exactly one of {list(FORMATS)}",
            "body",
        )
    present = [key for key in FORMATS if key in body]
    if len(present) != 1:
        raise APIError(
            400,
            "invalid_body",
            f"send exactly one of {list(FORMATS)}; got keys {quote(sorted(body))}",
            "body",
        )
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise APIError(400, "invalid_params", "params must be an object", "params")
    # params are accepted and not used: scikit-learn's predict takes none (MLflow
    # ignores them too for a model whose signature declares no params).
    name = present[0]
    value = body[name]
    if name == "dataframe_split":
        matrix = _split(value, schema, max_rows)
    elif name == "dataframe_records":
        matrix = _records(value, schema, max_rows)
    elif name == "instances":
        matrix = matrix_from_rows(value, schema, name, max_rows)
    else:
        matrix = matrix_from_columns(value, schema, name, max_rows)
    return matrix, body, name


def _split(frame: Any, schema: dict, max_rows: int) -> np.ndarray:
    """pandas' ``split`` orient: ``columns`` and ``data`` (``index`` is ignored);
    without ``columns``, the rows are positional like ``instances``."""
    field = "dataframe_split"
    if not isinstance(frame, dict) or "data" not in frame:
        raise APIError(
            400,
            "invalid_body",
            'dataframe_split must be an object {"columns": [...], "data": [[...]]}',
            field,
        )
    if "columns" not in frame:
        return matrix_from_rows(frame["data"], schema, f"{field}.data", max_rows)
    return matrix_from_table(frame["columns"], frame["data"], schema, field, max_rows)


def _records(records: Any, schema: dict, max_rows: int) -> np.ndarray:
    """pandas' ``records`` orient: ``[{column: value}, ...]``, matched by name."""
    field = "dataframe_records"
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        raise APIError(
            400,
            "invalid_rows",
            "dataframe_records must be a non-empty list of {column: value} objects",
            field,
        )
    first = records[0].keys()
    if not schema.get("named_features", True) and set(first) != set(
        schema["feature_names"]
    ):
        # A model fitted without names takes the columns in the order given.
        data = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or record.keys() != first:
                raise APIError(
                    400,
                    "invalid_row",
                    "every record must have the first record's columns",
                    f"{field}[{i}]",
                )
            data.append(list(record.values()))
        return matrix_from_table(list(first), data, schema, field, max_rows)
    return matrix_from_rows(records, schema, field, max_rows)


def parse_csv(raw: bytes, max_rows: int) -> tuple[list[str], Any]:
    """A CSV body → (header, rows as a float matrix); an empty cell is NaN and a
    first column with an empty name is pandas' index (``DataFrame.to_csv()``)."""
    try:
        text = raw.decode("utf-8-sig")
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise APIError(
            400, "malformed_csv", f"the CSV body cannot be read: {exc}", "body"
        ) from exc
    if not rows:
        raise APIError(
            400,
            "malformed_csv",
            "the CSV body is empty: send a header row of column names, then rows",
            "body",
        )
    header, data = rows[0], rows[1:]
    if header[0] == "" and len(header) > 1:
        header, data = header[1:], [row[1:] for row in data]
    if len(data) > max_rows:
        return header, data  # matrix_from_table reports the batch size
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise APIError(
                400,
                "wrong_feature_count",
                f"row has {len(row)} cells, the header {len(header)}",
                f"csv.data[{i}]",
            )
    try:
        return header, np.array(data, dtype=np.float64).reshape(len(data), -1)
    except ValueError:
        pass
    matrix = np.empty((len(data), len(header)))
    for i, row in enumerate(data):
        for j, cell in enumerate(row):
            try:
                matrix[i, j] = float(cell) if cell.strip() else np.nan
            except ValueError:
                raise APIError(
                    400,
                    "non_numeric_value",
                    f"value {quote(cell)} is not a number",
                    f"csv.data[{i}][{j}]",
                ) from None
    return header, matrix


def logged_body(body: Any, name: str, matrix: np.ndarray, schema: dict) -> Any:
    """What the request log may keep: a table as records by feature name (so
    redaction by name finds its values whatever the column order), other bodies as
    they came."""
    if name in ("csv", "dataframe_split"):
        names = schema["feature_names"]
        return {
            "dataframe_records": [
                dict(zip(names, row, strict=True)) for row in matrix.tolist()
            ]
        }
    return body


def response_body(prediction: Prediction) -> dict[str, Any]:
    """``{"predictions": [...]}``: one label (or value) per row, as the pyfunc of a
    scikit-learn model answers."""
    return {"predictions": prediction.labels}
