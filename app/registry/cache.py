"""Loaded models per worker, keyed by the sha256 of the bytes loaded, bounded (LRU).

The bound is both a count and a memory budget in MB: each loaded model is charged
an estimate of its resident size (its pickled size for scikit-learn estimators,
twice its graph for onnxruntime sessions), and the least recently used models are
dropped until both limits hold. The model just loaded always stays.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app import metrics
from app.errors import APIError
from app.registry.loading import load_bytes
from app.registry.onnx_runtime import OnnxModel
from app.registry.schema import predict_rows

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to answer (an estimator or an ONNX session), with its schema."""

    sha256: str
    estimator: Any
    schema: dict[str, Any]
    load_seconds: float
    runtime: str = "sklearn"
    footprint: int = 0  # estimated resident bytes, charged against the cache budget
    classes: list | None = field(init=False)
    batcher: Any = field(default=None, init=False, repr=False)  # set when batching

    def __post_init__(self):
        self.classes = self.schema.get("classes")
        self._argmax_classes = _final(self.estimator).classes_ if \
            self.runtime == "sklearn" and labels_are_argmax(self.estimator,
                                                            self.schema) else None

    def predict(self, rows: np.ndarray):
        """Return (labels, probabilities or None) for validated rows."""
        if self._argmax_classes is not None:  # one pass over the trees, not two
            probabilities = self.estimator.predict_proba(rows)
            return self._argmax_classes.take(probabilities.argmax(axis=1)), \
                probabilities
        return predict_rows(self.estimator, self.schema, rows)


def _final(estimator: Any) -> Any:
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


# Classifiers whose predict() is, in scikit-learn's own code, the class with the
# highest predict_proba(): for them one predict_proba call gives both answers.
ARGMAX_CLASSIFIERS = ("RandomForestClassifier", "ExtraTreesClassifier",
                      "HistGradientBoostingClassifier")


def labels_are_argmax(estimator: Any, schema: dict[str, Any]) -> bool:
    final = _final(estimator)
    return bool(schema.get("has_proba")) and \
        type(final).__module__.startswith("sklearn.ensemble") and \
        type(final).__name__ in ARGMAX_CLASSIFIERS and \
        getattr(final, "n_outputs_", 1) == 1 and \
        isinstance(getattr(final, "classes_", None), np.ndarray)


def estimated_footprint(loaded: Any, data: bytes) -> int:
    """Resident-size estimate: ONNX session ~2x its graph; estimator ~ its pickle."""
    if isinstance(loaded, OnnxModel):
        return 2 * len(data)
    try:
        return len(pickle.dumps(loaded, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # objects from trusted third-party modules may not pickle
        return 2 * len(data)


class ModelCache:
    """LRU of loaded models; bytes are read from the database only on a miss."""

    def __init__(self, capacity: int, trusted_modules: Iterable[str] = (),
                 max_bytes: int | None = None):
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes
        self.trusted_modules = tuple(trusted_modules)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.evictions = 0

    def get(self, sha256: str, schema: dict[str, Any], file_format: str,
            read_bytes: Callable[[], bytes], runtime: str = "sklearn") -> LoadedModel:
        """Return the loaded model for ``sha256``, loading it once if needed.

        ``sha256`` names the bytes ``read_bytes`` returns: the artifact, or the
        version's ONNX graph when ``runtime`` is "onnx".
        """
        with self._lock:
            model = self._models.get(sha256)
            if model is not None:
                self._models.move_to_end(sha256)
                return model
            loading = self._loading.setdefault(sha256, threading.Lock())
        with loading:  # one load per artifact, however many threads ask
            with self._lock:
                model = self._models.get(sha256)
            if model is None:
                model = self._load(sha256, schema, file_format, read_bytes(), runtime)
            with self._lock:
                self._models[sha256] = model
                self._models.move_to_end(sha256)
                self._evict()
                self._loading.pop(sha256, None)
        return model

    def _evict(self) -> None:
        while len(self._models) > 1 and (
                len(self._models) > self.capacity
                or (self.max_bytes is not None and self.bytes_used > self.max_bytes)):
            self._models.popitem(last=False)
            self.evictions += 1
        if self.max_bytes is not None and self.bytes_used > self.max_bytes:
            log.warning("one model (%d bytes) exceeds the model cache budget of %d "
                        "bytes; it is kept alone", self.bytes_used, self.max_bytes)

    def _load(self, sha256: str, schema, file_format: str, data: bytes,
              runtime: str) -> LoadedModel:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise APIError(503, "artifact_corrupt",
                           "the stored artifact does not match its sha256; the "
                           "version cannot be loaded until an admin replaces it")
        started = time.perf_counter()
        if runtime == "onnx":
            try:
                loaded = OnnxModel(data, schema)
            except APIError as exc:
                raise APIError(503, "artifact_corrupt",
                               f"the stored ONNX graph cannot be loaded: {exc.message}"
                               ) from exc
        else:
            loaded = load_bytes(data, file_format, self.trusted_modules)
        seconds = time.perf_counter() - started
        metrics.MODEL_LOAD.labels("onnx" if runtime == "onnx" else file_format
                                  ).observe(seconds)
        return LoadedModel(sha256, loaded, schema, seconds, runtime,
                           estimated_footprint(loaded, data))

    @property
    def bytes_used(self) -> int:
        return sum(m.footprint for m in self._models.values())

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._models

    def loaded(self) -> list[LoadedModel]:
        """The models held now, least recently used first."""
        with self._lock:
            return list(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
