"""At upload, inside the sandbox: convert an estimator to ONNX, verify it, time it.

The ONNX variant is kept only if, on the version's stored sample plus a few hundred
synthetic rows drawn uniformly within the sample's per-feature ranges, it gives
identical labels (compared as the JSON the API would send), probabilities within
``PROBA_ATOL`` absolute, and regression values within ``REGRESSION_RTOL`` relative.
Two graphs are tried: a double-precision input (exact for linear models and
pipelines) and a single-precision one (what scikit-learn trees compute in, so the
only exact choice for forests); tree models try single precision first.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import orjson

from app.registry.onnx_graph import OnnxModel
from app.registry.schema import predict_rows

PROBA_ATOL = 1e-5
REGRESSION_RTOL = 1e-5
REGRESSION_ATOL = 1e-9  # so that a true 0.0 may come back as 1e-17
SYNTHETIC_ROWS = 300
TIMING_SECONDS = 0.1  # per runtime, for the speed-up measurement (at least 3 calls)


def verification_rows(
    sample_rows: list, seed: int = 0, count: int = SYNTHETIC_ROWS
) -> np.ndarray:
    """The stored sample plus ``count`` rows drawn within its per-feature ranges."""
    sample = np.asarray(sample_rows, dtype=np.float64)
    finite = np.where(np.isfinite(sample), sample, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
        low = np.nan_to_num(np.nanmin(finite, axis=0))
        high = np.nan_to_num(np.nanmax(finite, axis=0))
    synthetic = np.random.default_rng(seed).uniform(
        low, high, size=(count, sample.shape[1])
    )
    return np.vstack([sample, synthetic])


def disagreement(schema: dict[str, Any], expected, got) -> tuple[str | None, dict]:
    """Compare scikit-learn's (labels, proba) with ONNX's; return (problem, stats)."""
    labels, proba = expected
    onnx_labels, onnx_proba = got
    stats: dict[str, Any] = {}
    if schema["task"] == "regression":
        want = np.asarray(labels, dtype=np.float64)
        have = np.asarray(onnx_labels, dtype=np.float64)
        if want.shape != have.shape:
            return (
                f"output shape {list(have.shape)} instead of {list(want.shape)}"
            ), stats
        error = np.abs(have - want)
        relative = error / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
        stats["max_relative_diff"] = float(relative.max(initial=0.0))
        bad = int((error > REGRESSION_RTOL * np.abs(want) + REGRESSION_ATOL).sum())
        if bad:
            return (
                f"{bad} predictions differ by more than {REGRESSION_RTOL:g} "
                f"relative (max {stats['max_relative_diff']:.3g})"
            ), stats
        return None, stats
    want = np.asarray(labels)
    have = np.asarray(onnx_labels)
    if want.shape != have.shape:
        return f"label shape {list(have.shape)} instead of {list(want.shape)}", stats
    if orjson.dumps(want.tolist()) != orjson.dumps(have.tolist()):
        differ = sum(a != b for a, b in zip(want.tolist(), have.tolist(), strict=True))
        return f"{differ} of {len(want)} labels differ", stats
    if proba is not None:
        if onnx_proba is None or np.shape(onnx_proba) != np.shape(proba):
            return "the graph does not give the same probabilities", stats
        stats["max_proba_diff"] = float(
            np.abs(np.asarray(onnx_proba, dtype=np.float64) - proba).max(initial=0.0)
        )
        if stats["max_proba_diff"] > PROBA_ATOL:
            return (
                f"probabilities differ by up to {stats['max_proba_diff']:.3g} "
                f"(allowed {PROBA_ATOL:g})"
            ), stats
    return None, stats


def _is_tree_model(estimator: Any) -> bool:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return type(final).__module__.startswith(("sklearn.tree", "sklearn.ensemble"))


def convert(estimator: Any, schema: dict[str, Any], precision: str) -> bytes:
    """skl2onnx conversion with one [batch, n_features] input of ``precision``."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from sklearn.base import is_classifier

    tensor = DoubleTensorType if precision == "double" else FloatTensorType
    options = {"zipmap": False} if is_classifier(estimator) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = to_onnx(
            estimator,
            initial_types=[("X", tensor([None, schema["n_features"]]))],
            options=options,
        )
    return graph.SerializeToString()


def seconds_per_call(predict, row: np.ndarray, budget: float = TIMING_SECONDS) -> float:
    """Mean wall time of ``predict(row)`` over at most ``budget`` seconds."""
    predict(row)  # first call pays one-off costs
    calls, started = 0, time.perf_counter()
    while calls < 3 or (time.perf_counter() - started < budget and calls < 2000):
        predict(row)
        calls += 1
    return (time.perf_counter() - started) / calls


def compile_onnx(
    estimator: Any, schema: dict[str, Any], sample_rows: list
) -> dict[str, Any]:
    """Return {"verdict", "reason", "onnx" (bytes or None), "speedup", "report"}."""
    rows = verification_rows(sample_rows)
    expected = predict_rows(estimator, schema, rows)
    report: dict[str, Any] = {"rows_checked": len(rows), "attempts": []}
    converted = False
    order = ("float", "double") if _is_tree_model(estimator) else ("double", "float")
    for precision in order:
        attempt: dict[str, Any] = {"input": precision}
        report["attempts"].append(attempt)
        try:
            data = convert(estimator, schema, precision)
            converted = True
            model = OnnxModel(data, schema)
            problem, stats = disagreement(schema, expected, model.predict(rows))
        except Exception as exc:  # skl2onnx and onnxruntime raise anything
            attempt["problem"] = _short(f"{type(exc).__name__}: {exc}")
            continue
        attempt.update(stats)
        if problem:
            attempt["problem"] = problem
            continue
        row = rows[:1]
        sklearn_s = seconds_per_call(lambda r: predict_rows(estimator, schema, r), row)
        onnx_s = seconds_per_call(model.predict, row)
        report.update(input=precision, sklearn_ms=sklearn_s * 1e3, onnx_ms=onnx_s * 1e3)
        return {
            "verdict": "verified",
            "onnx": data,
            "speedup": sklearn_s / onnx_s,
            "reason": f"agrees on {len(rows)} rows ({precision} input)",
            "report": report,
        }
    reason = "; ".join(f"{a['input']}: {a['problem']}" for a in report["attempts"])
    return {
        "verdict": "mismatch" if converted else "not_convertible",
        "onnx": None,
        "speedup": None,
        "reason": reason,
        "report": report,
    }


def _short(message: str, limit: int = 300) -> str:
    """First line of an error, bounded (skl2onnx errors can dump whole graphs)."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return first if len(first) <= limit else first[:limit] + "…"
