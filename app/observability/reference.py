"""Reference distributions of a version's features, and the binning that the live
sketch and the payload path share.

A numeric feature gets quantile bins (inner edges at the reference's deciles, so
each bin holds about a tenth of the reference rows); a feature with few distinct
whole-number values is categorical and gets one bin per value. Every feature has
one more bin at the end for missing values (NaN) and categories the reference
never had.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.web.errors import APIError

BINS = 10
MAX_CATEGORIES = 12  # whole-number features with at most this many values
MIN_ROWS = 20  # fewer reference rows give meaningless quantiles
KEEP_VALUES = 1000  # raw reference values kept per feature for the KS test
MAX_REFERENCE_BYTES = 32 * 1024 * 1024


def describe_feature(name: str, column: np.ndarray, seed: int) -> dict[str, Any]:
    """The reference of one feature: bins, counts per bin and a value subsample."""
    present = column[~np.isnan(column)]
    missing = int(len(column) - len(present))
    values = np.unique(present)
    if len(values) <= MAX_CATEGORIES and np.all(values == np.round(values)):
        counts = [int((present == v).sum()) for v in values]
        return {
            "name": name,
            "kind": "categorical",
            "categories": values.tolist(),
            "counts": [*counts, missing],
        }
    quantiles = np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1])
    edges = np.unique(quantiles)
    counts = np.bincount(
        np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1
    )
    rng = np.random.default_rng(seed)
    kept = (
        present
        if len(present) <= KEEP_VALUES
        else rng.choice(present, KEEP_VALUES, replace=False)
    )
    return {
        "name": name,
        "kind": "numeric",
        "edges": edges.tolist(),
        "counts": [*counts.tolist(), missing],
        "values": np.sort(kept).tolist(),  # split off by the caller
    }


def describe_rows(rows: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Reference distributions of every feature of ``rows`` (one column each)."""
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise APIError(
            400,
            "invalid_reference",
            f"the reference needs {len(names)} columns, got shape {list(rows.shape)}",
            "reference",
        )
    if len(rows) < MIN_ROWS:
        raise APIError(
            400,
            "reference_too_small",
            f"the reference has {len(rows)} rows; send at least {MIN_ROWS}",
            "reference",
        )
    if np.isinf(rows).any():
        raise APIError(
            400, "invalid_reference", "the reference holds infinite values", "reference"
        )
    return [describe_feature(n, rows[:, j], j) for j, n in enumerate(names)]


def rows_from_csv(data: bytes, names: list[str]) -> np.ndarray:
    """A CSV file of reference rows → a float matrix ordered like ``names``.

    A first row of feature names is matched by name (any order); without one the
    columns are taken in the model's order. Empty cells are missing values.
    """
    if len(data) > MAX_REFERENCE_BYTES:
        raise APIError(
            413, "reference_too_large", "the reference CSV is over 32 MB", "reference"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise APIError(
            400, "invalid_reference", "the reference CSV is not UTF-8", "reference"
        ) from exc
    lines = [
        row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)
    ]
    if not lines:
        raise APIError(
            400, "empty_reference", "the reference CSV is empty", "reference"
        )
    header, body = lines[0], lines[1:]
    named = not all(_number(c) is not None for c in header)
    if named:
        order = _column_order([c.strip() for c in header], names)
    else:
        order, body = list(range(len(names))), lines
        if len(header) != len(names):
            raise APIError(
                400,
                "invalid_reference",
                f"the reference CSV has {len(header)} columns, expected "
                f"{len(names)} (or a first row naming them)",
                "reference",
            )
    matrix = np.empty((len(body), len(names)))
    for i, line in enumerate(body):
        if len(line) != len(header):
            raise APIError(
                400,
                "invalid_reference",
                f"line {i + 1 + named} has {len(line)} cells, expected {len(header)}",
                "reference",
            )
        for j, k in enumerate(order):
            value = _number(line[k])
            if value is None:
                raise APIError(
                    400,
                    "invalid_reference",
                    f"{line[k]!r} in column {names[j]!r} is not a number",
                    "reference",
                )
            matrix[i, j] = value
    return matrix


def _column_order(header: list[str], names: list[str]) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise APIError(
            400,
            "invalid_reference",
            f"the reference CSV lacks column(s) {missing}; expected {names}",
            "reference",
        )
    return [header.index(n) for n in names]


def _number(cell: str) -> float | None:
    cell = cell.strip()
    if cell == "" or cell.lower() in {"nan", "na", "null"}:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class BinSpec:
    """A version's reference compiled for binning many rows at once.

    Each feature has ``slots`` cells in the count vector (padded to the widest
    feature); its last cell (``slots - 1``) counts missing and unseen values.
    """

    version_id: int
    names: tuple[str, ...]
    slots: int
    # (features, slots - 1) inner edges, padded with +inf (at least one): a value
    # lands in slot ``slots - 1 - (number of edges above it)``, NaN in the last.
    inner: np.ndarray
    inner_t: np.ndarray  # the same, one row per edge position (for big batches)
    categorical: np.ndarray  # indexes of categorical features
    categories: np.ndarray  # (len(categorical), slots - 1) values, padded with NaN
    offsets: np.ndarray  # feature j's cells start at offsets[j]
    bins: tuple[int, ...]  # how many real bins each feature has

    @classmethod
    def build(cls, version_id: int, features: list[dict[str, Any]]) -> BinSpec:
        bins = [len(f["counts"]) - 1 for f in features]
        slots = max(bins) + 2  # the widest feature, one +inf pad, the last cell
        inner = np.full((len(features), slots - 1), np.inf)
        categorical, categories = [], []
        for j, feature in enumerate(features):
            if feature["kind"] == "categorical":
                values = np.asarray(feature["categories"], dtype=float)
                edges = (values[1:] + values[:-1]) / 2  # nearest category
                categorical.append(j)
                padded = np.full(slots - 1, np.nan)
                padded[: len(values)] = values
                categories.append(padded)
            else:
                edges = np.asarray(feature["edges"], dtype=float)
            inner[j, : len(edges)] = edges
        return cls(
            version_id,
            tuple(f["name"] for f in features),
            slots,
            inner,
            np.ascontiguousarray(inner.T),
            np.asarray(categorical, dtype=np.intp),
            np.asarray(categories).reshape(len(categorical), slots - 1),
            np.arange(len(features), dtype=np.intp) * slots,
            tuple(bins),
        )

    def cells(self, rows: np.ndarray) -> np.ndarray:
        """The count cell of every value of ``rows`` (n × features), as (n × features).

        The same bins as ``np.searchsorted(edges, x, side="right")`` per feature,
        computed for all features at once: a small batch compares against every
        edge in one numpy call, a large one adds one comparison per edge position.
        NaN is below no edge, so it lands in the last (missing) cell by itself.
        """
        n, d = rows.shape
        if n * d <= 600:
            above = (rows[:, :, None] < self.inner[None, :, :]).sum(axis=2)
        else:
            above = np.zeros((n, d), dtype=np.uint8)  # fewer than 256 bins
            for edge in self.inner_t:
                np.add(above, rows < edge, out=above, casting="unsafe")
        slot = self.slots - 1 - above.astype(np.intp)
        if len(self.categorical):  # a value the reference never had: last cell
            values = rows[:, self.categorical]
            picked = np.minimum(slot[:, self.categorical], self.slots - 2)
            nearest = self.categories[np.arange(len(self.categorical))[None, :], picked]
            slot[:, self.categorical] = np.where(
                nearest == values, picked, self.slots - 1
            )
        return slot + self.offsets

    def count(self, rows: np.ndarray) -> np.ndarray:
        """Counts of ``rows`` per cell: a vector of features × slots."""
        return np.bincount(
            self.cells(rows).ravel(), minlength=len(self.names) * self.slots
        )

    def feature_counts(self, vector: np.ndarray, j: int) -> np.ndarray:
        """Feature j's counts in the reference's layout (its bins, then missing)."""
        cells = vector[self.offsets[j] : self.offsets[j] + self.slots]
        return np.append(cells[: self.bins[j]], cells[-1])
