"""The one interface serving code uses for every model: load, describe, predict.

Two implementations: ``onnx.InProcessOnnx`` (graphs the server built and verified
itself, made only of allowlisted operators) and ``isolated.IsolatedRuntime``
(everything else, in confined inference processes). Callers never ask which.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.web.errors import APIError

log = logging.getLogger(__name__)


class PredictionTimeout(APIError):
    """The prediction did not finish within its deadline (504)."""

    def __init__(self, seconds: float | None = None):
        limit = f" of {seconds:g} s" if seconds else ""
        super().__init__(
            504,
            "prediction_timeout",
            f"the model did not answer within its deadline{limit}; the run was stopped",
            "instances",
        )


class RuntimeFailed(APIError):
    """The process running the model died or misbehaved (502)."""

    def __init__(self):
        super().__init__(
            502,
            "runtime_failed",
            "the process running this model failed; it has been "
            "replaced, and other models were not affected",
            "instances",
        )


class PredictionFailed(APIError):
    """The model raised an error on these rows (422); the detail is logged only."""

    def __init__(self):
        super().__init__(
            422,
            "prediction_failed",
            "the model could not predict these rows; the server log "
            "has the detail under this request id",
            "instances",
        )


class NotExplainable(APIError):
    """No exact additive explanation for this kind of model (422)."""

    def __init__(self, estimator: str):
        super().__init__(
            422,
            "not_explainable",
            f"explanations cover linear models and decision tree ensembles; "
            f"this model is a {estimator}",
            "model",
        )


@dataclass
class Explained:
    """Per-feature contributions for each row: base + Σ contributions = output.

    ``base`` and ``output`` are (rows, outputs); ``contributions`` is (rows,
    outputs, features). ``outputs`` names each output (a class, or "prediction");
    ``explained`` says which output of the model they are (``explainer``).
    """

    base: np.ndarray
    output: np.ndarray
    contributions: np.ndarray
    features: list[str]
    outputs: list
    explained: str
    method: str
    mapped: bool

    def consistent(self, rows: int) -> bool:
        """True when the shapes agree with each other and with ``rows``."""
        shape = (rows, len(self.outputs))
        return (
            self.base.shape == shape
            and self.output.shape == shape
            and self.contributions.shape == (*shape, len(self.features))
        )


class Runtime(ABC):
    """A loaded model version, ready to answer."""

    #: "in-process onnxruntime" or "isolated": shown to admins, never branched on
    kind: str = ""
    #: micro-batching pays off only where one call has a large fixed cost
    batchable: bool = False

    def __init__(self, sha256: str, schema: dict[str, Any], footprint: int):
        self.sha256 = sha256
        self.schema = schema
        self.classes: list | None = schema.get("classes")
        self.footprint = footprint  # estimated bytes held by this worker
        self.load_seconds = 0.0
        self.batcher: Any = None  # set by the serving state when batching

    @abstractmethod
    def predict(self, rows: np.ndarray, deadline: float | None = None):
        """Return (labels, probabilities or None); raise PredictionTimeout past
        ``deadline`` (``time.monotonic()``), PredictionFailed or RuntimeFailed."""

    def explain(self, rows: np.ndarray, deadline: float | None = None) -> Explained:
        """Per-feature contributions; only isolated runtimes hold the estimator."""
        raise NotExplainable(f"model served by {self.kind}")

    def describe(self) -> dict[str, Any]:
        """What answers for this version, for the API and the admin page."""
        return {
            "runtime": self.kind,
            "classes": self.classes,
            "n_features": self.schema.get("n_features"),
        }

    @abstractmethod
    def close(self) -> None:
        """Release what the runtime holds (processes, sessions)."""
