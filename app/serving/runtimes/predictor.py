"""Model code behind one call: an estimator or an ONNX graph, loaded from bytes.

This module runs only where model code may run: inside an inference process or the
upload validation sandbox, both confined (``confine``). The web worker never
imports it to predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.registry.loading import load_bytes
from app.registry.schema import predict_rows
from app.serving.runtimes import explainer

# Classifiers whose predict() is, in scikit-learn's own code, the class with the
# highest predict_proba(): for them one predict_proba call gives both answers.
ARGMAX_CLASSIFIERS = (
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "HistGradientBoostingClassifier",
)


def _final(estimator: Any) -> Any:
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def labels_are_argmax(estimator: Any, schema: dict[str, Any]) -> bool:
    """True when labels can be taken from predict_proba's argmax (one pass)."""
    final = _final(estimator)
    return (
        bool(schema.get("has_proba"))
        and type(final).__module__.startswith("sklearn.ensemble")
        and type(final).__name__ in ARGMAX_CLASSIFIERS
        and getattr(final, "n_outputs_", 1) == 1
        and isinstance(getattr(final, "classes_", None), np.ndarray)
    )


class Predictor:
    """A loaded model (estimator or ONNX graph) that answers (labels, proba)."""

    def __init__(
        self,
        data: bytes,
        file_format: str,
        schema: dict[str, Any],
        trusted_modules: tuple[str, ...] = (),
    ):
        self.schema = schema
        self.file_format = file_format
        self.model = load_bytes(data, file_format, trusted_modules)
        self._argmax_classes = (
            _final(self.model).classes_
            if file_format != "onnx" and labels_are_argmax(self.model, schema)
            else None
        )

    def predict(self, rows: np.ndarray):
        """Return (labels, probabilities or None) for validated rows."""
        if self._argmax_classes is not None:  # one pass over the trees, not two
            probabilities = self.model.predict_proba(rows)
            return self._argmax_classes.take(
                probabilities.argmax(axis=1)
            ), probabilities
        return predict_rows(self.model, self.schema, rows)

    def explain(self, rows: np.ndarray) -> explainer.Explanation:
        """Per-feature contributions for validated rows (``explainer``)."""
        if self.file_format == "onnx":
            raise explainer.NotExplainable("ONNX graph")
        return explainer.explain(self.model, rows, self.schema["feature_names"])
