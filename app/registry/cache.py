"""Loaded models per worker, keyed by artifact sha256 and bounded (LRU)."""

from __future__ import annotations

import hashlib
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
from app.registry.schema import predict_rows


@dataclass
class LoadedModel:
    """An estimator ready to answer, with the schema recorded at upload."""

    sha256: str
    estimator: Any
    schema: dict[str, Any]
    load_seconds: float
    classes: list | None = field(init=False)

    def __post_init__(self):
        self.classes = self.schema.get("classes")

    def predict(self, rows: np.ndarray):
        """Return (labels, probabilities or None) for validated rows."""
        return predict_rows(self.estimator, self.schema, rows)


class ModelCache:
    """LRU of loaded models; artifact bytes are read from the database only on a miss."""

    def __init__(self, capacity: int, trusted_modules: Iterable[str] = ()):
        self.capacity = max(1, capacity)
        self.trusted_modules = tuple(trusted_modules)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, sha256: str, schema: dict[str, Any], file_format: str,
            read_bytes: Callable[[], bytes]) -> LoadedModel:
        """Return the loaded model for ``sha256``, loading it once if needed."""
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
                model = self._load(sha256, schema, file_format, read_bytes())
            with self._lock:
                self._models[sha256] = model
                self._models.move_to_end(sha256)
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
                self._loading.pop(sha256, None)
        return model

    def _load(self, sha256: str, schema, file_format: str, data: bytes) -> LoadedModel:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise APIError(503, "artifact_corrupt",
                           "the stored artifact does not match its sha256; the "
                           "version cannot be loaded until an admin replaces it")
        started = time.perf_counter()
        estimator = load_bytes(data, file_format, self.trusted_modules)
        seconds = time.perf_counter() - started
        metrics.MODEL_LOAD.labels(file_format).observe(seconds)
        return LoadedModel(sha256, estimator, schema, seconds)

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._models

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
