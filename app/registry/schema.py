"""What a loaded estimator expects and answers: derived once, at upload."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from app.registry.errors import ModelFileError
from app.registry.onnx_graph import OnnxModel


def _plain(values) -> list:
    """numpy values → JSON-able Python values."""
    return np.asarray(values).tolist()


def derive_schema(estimator: Any) -> dict[str, Any]:
    """Return feature names and count, task and classes of a fitted estimator."""
    if not callable(getattr(estimator, "predict", None)):
        raise ModelFileError(
            "the file does not hold an estimator with a predict method"
        )
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise ModelFileError(
            "the estimator is not fitted (it has no n_features_in_); fit it before "
            "saving"
        )
    names = getattr(estimator, "feature_names_in_", None)
    feature_names = (
        [str(n) for n in names]
        if names is not None
        else [f"x{i}" for i in range(int(n_features))]
    )
    classes = getattr(estimator, "classes_", None)
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator) and classes is not None:
        task = "classification"
    elif is_regressor(estimator):
        task = "regression"
    else:
        task = "other"
    from sklearn.utils import get_tags

    try:
        allow_nan = bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # estimators from trusted third-party modules may lack tags
        allow_nan = False
    return {
        "estimator": type(estimator).__name__,
        "allow_nan": allow_nan,
        "n_features": int(n_features),
        "feature_names": feature_names,
        "named_features": names is not None,
        "task": task,
        "classes": _plain(classes) if task == "classification" else None,
        "has_proba": task == "classification"
        and callable(getattr(estimator, "predict_proba", None)),
    }


def predict_rows(estimator: Any, schema: dict[str, Any], rows: np.ndarray):
    """Predict ``rows`` (already ordered like the schema); return (labels, proba)."""
    if isinstance(estimator, OnnxModel):
        return estimator.predict(rows)
    with warnings.catch_warnings():
        # Columns are put in feature_names_in_ order before this call, so the
        # "fitted with feature names" warning about a plain array is moot.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        predictions = estimator.predict(rows)
        probabilities = estimator.predict_proba(rows) if schema["has_proba"] else None
    return predictions, probabilities


def smoke_sample(estimator: Any, schema: dict[str, Any], rows=None) -> dict[str, Any]:
    """Predict a small sample of rows and record it, proving the model answers."""
    n = schema["n_features"]
    if rows is None:
        base = np.zeros((1, n))
        rows = np.vstack([base, base + 1.0, base - 1.0])
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] != n:
        raise ModelFileError(
            f"the sample must have {n} columns, got shape {list(rows.shape)}", "sample"
        )
    try:
        predictions, probabilities = predict_rows(estimator, schema, rows)
    except Exception as exc:  # the detail is model code's; the admin gets ours
        raise ModelFileError(
            f"the model failed to predict a sample row ({type(exc).__name__})"
        ) from exc
    if len(predictions) != len(rows):
        raise ModelFileError("the model returned a different number of predictions")
    return {
        "rows": rows.tolist(),
        "predictions": _plain(predictions),
        "probabilities": None if probabilities is None else _plain(probabilities),
    }


def extreme_rows(sample_rows: list) -> np.ndarray:
    """Rows at the edges: each feature alone, then all together, at 10x the sample's
    min and max and at -1e6 and 1e6 (other features at the first sample row)."""
    sample = np.asarray(sample_rows, dtype=np.float64)
    base = np.nan_to_num(sample[0])
    with np.errstate(all="ignore"):
        low = np.nan_to_num(np.nanmin(sample, axis=0)) * 10
        high = np.nan_to_num(np.nanmax(sample, axis=0)) * 10
    rows = []
    for values in (low, high, np.full_like(base, -1e6), np.full_like(base, 1e6)):
        rows.append(values)
        for j in range(min(len(base), 256)):
            row = base.copy()
            row[j] = values[j]
            rows.append(row)
    return np.vstack(rows)


def predict_extremes(estimator: Any, schema: dict[str, Any], sample_rows: list) -> None:
    """Predict the extreme rows; a failure there is the model's, not the row's."""
    rows = extreme_rows(sample_rows)
    for row in rows:  # one at a time: an error on one row must not hide the others
        try:
            predict_rows(estimator, schema, row[None, :])
        except Exception:
            pass  # refusing a value is fine; crashing or hanging is not
