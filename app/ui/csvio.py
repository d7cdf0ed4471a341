"""CSV in and out: read an uploaded table by its header, write results safely.

Reading checks what the request path can check cheaply (encoding, header, missing
columns, row count); converting cells to numbers happens chunk by chunk in the
job that predicts, so a large file never holds up a web request.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from app.serving.inputs import check_finite, matrix_from_rows
from app.web.errors import APIError, quote

# A plain decimal number: a spreadsheet reads it as a value, never as a formula.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# Characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CELL = re.compile(r"\[(\d+)\]\[(\d+)\]$")


@dataclass
class ParsedCSV:
    """An uploaded table: all its columns, its rows as text, where each feature is."""

    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # line number in the file of each row, for error messages
    feature_columns: list[int]  # header index of each model feature, in model order
    feature_names: list[str]

    def __len__(self) -> int:
        return len(self.rows)


def read_csv(data: bytes, schema: dict, max_rows: int) -> ParsedCSV:
    """Parse ``data``; raise an APIError naming missing columns or bad rows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise APIError(
            400, "invalid_csv", "the file is not UTF-8 text", "file"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise APIError(400, "empty_batch", "the file is empty", "file") from None
    except csv.Error as exc:
        raise APIError(
            400, "invalid_csv", f"the header is not valid CSV: {exc}", "file"
        ) from exc
    names = schema["feature_names"]
    missing = [n for n in names if n not in header]
    if missing:
        raise APIError(
            400,
            "missing_feature",
            f"missing column(s): {', '.join(missing)} (the header must name "
            f"every feature: {', '.join(names)})",
            "file",
        )
    duplicated = sorted({n for n in names if header.count(n) > 1})
    if duplicated:
        raise APIError(
            400,
            "duplicate_column",
            f"column(s) named more than once: {', '.join(duplicated)}",
            "file",
        )
    rows, lines = [], []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines, typically at the end
            if len(row) != len(header):
                raise APIError(
                    400,
                    "ragged_row",
                    f"line {reader.line_num} has {len(row)} cells, the "
                    f"header has {len(header)}",
                    "file",
                )
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) > max_rows:
                raise APIError(
                    413,
                    "batch_too_large",
                    f"the file has more than {max_rows} rows, the limit for one upload",
                    "file",
                )
    except csv.Error as exc:
        raise APIError(
            400,
            "invalid_csv",
            f"line {reader.line_num} is not valid CSV: {exc}",
            "file",
        ) from exc
    if not rows:
        raise APIError(400, "empty_batch", "the file has a header but no rows", "file")
    return ParsedCSV(header, rows, lines, [header.index(n) for n in names], names)


def to_matrix(parsed: ParsedCSV, start: int, stop: int, schema: dict) -> np.ndarray:
    """Rows ``start:stop`` as a float matrix in feature order; empty cells are NaN."""
    columns = parsed.feature_columns
    cells = [[row[j] for j in columns] for row in parsed.rows[start:stop]]
    try:
        matrix = np.array(cells, dtype=np.float64)
    except ValueError:
        matrix = _convert_slowly(cells, parsed, start)
    try:
        check_finite(matrix, schema, "")
    except APIError as error:  # say where in the file, not where in the matrix
        i, j = (int(k) for k in _CELL.search(error.field or "").groups())
        value = parsed.rows[start + i][parsed.feature_columns[j]]
        what = "an empty cell" if not value.strip() else quote(value)
        raise APIError(
            400,
            "non_finite_value",
            f"line {parsed.lines[start + i]}, column "
            f"'{parsed.feature_names[j]}': {what} is not allowed for this "
            "model",
            parsed.feature_names[j],
        ) from None
    return matrix


def _convert_slowly(
    cells: list[list[str]], parsed: ParsedCSV, start: int
) -> np.ndarray:
    """Convert cell by cell: empty means missing (NaN); name the first bad cell."""
    out = np.empty((len(cells), len(parsed.feature_columns)), dtype=np.float64)
    for i, row in enumerate(cells):
        for j, value in enumerate(row):
            if not value.strip():
                out[i, j] = np.nan
                continue
            try:
                out[i, j] = float(value)
            except ValueError:
                raise APIError(
                    400,
                    "non_numeric_value",
                    f"line {parsed.lines[start + i]}, column "
                    f"'{parsed.feature_names[j]}': {quote(value)} is not a "
                    "number",
                    parsed.feature_names[j],
                ) from None
    return out


def result_header(
    parsed: ParsedCSV, classes: list | None, with_proba: bool
) -> list[str]:
    """Every uploaded column (extra ones echoed back), the prediction, probabilities."""
    header = [*parsed.header, "prediction"]
    if classes is not None and with_proba:
        header += [f"probability_{c}" for c in classes]
    return header


def result_rows(
    parsed: ParsedCSV, start: int, labels: np.ndarray, probabilities: np.ndarray | None
) -> Iterator[list]:
    """Rows of the result table for one predicted chunk."""
    label_list = labels.tolist()
    proba_list = None if probabilities is None else probabilities.tolist()
    for i, label in enumerate(label_list):
        row = [*parsed.rows[start + i], _cell(label)]
        if proba_list is not None:
            row += [_cell(p) for p in proba_list[i]]
        yield row


def _cell(value: object) -> object:
    """NaN and ±infinity as an empty cell, as JSON answers write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def neutralise(cell: object) -> str:
    """Make a cell inert in spreadsheets: prefix formula-like text with a quote.

    A plain number such as ``-1.5`` stays a number (it is no formula); anything
    else starting with ``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with ``'``.
    """
    text = "" if cell is None else str(cell)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def export_lines(rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """CSV text line by line, every cell neutralised (for streaming downloads)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


class FormRowError(APIError):
    """Every bad field of a row typed into the form: ``messages`` by feature index."""

    def __init__(self, errors: dict[int, APIError]):
        first = errors[min(errors)]
        super().__init__(first.status, first.code, first.message, first.field)
        self.messages = {index: error.message for index, error in errors.items()}


def row_from_text(values: list[str], schema: dict, max_rows: int) -> np.ndarray:
    """One row typed into a form (text per feature) as a validated 1-row matrix.

    An empty field is a missing value (NaN) for models that handle missing values,
    and "required" for the others. Every bad field is reported at once
    (FormRowError); a good row then goes through the API's own validation.
    """
    row: list[float] = []
    errors: dict[int, APIError] = {}
    for j, value in enumerate(values):
        text = (value or "").strip()
        field = f"form[0][{j}]"
        try:
            number = float(text) if text else float("nan")
        except ValueError:
            errors[j] = APIError(
                400, "non_numeric_value", f"{quote(text)} is not a number", field
            )
            continue
        if not text and not schema.get("allow_nan"):
            errors[j] = APIError(400, "missing_value", "required", field)
        elif text and not np.isfinite(number):
            errors[j] = APIError(
                400, "non_finite_value", f"{quote(text)} is not a finite number", field
            )
        row.append(number)
    if errors:
        raise FormRowError(errors)
    return matrix_from_rows([row], schema, "form", max_rows)


def field_index(error: APIError) -> int | None:
    """The feature position an error about ``form[0][j]`` refers to."""
    match = _CELL.search(error.field or "")
    return int(match.group(2)) if match else None
