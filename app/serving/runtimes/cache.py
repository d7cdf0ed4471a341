"""Loaded runtimes per worker, keyed by the sha256 of the bytes loaded, bounded (LRU).

``open_runtime`` is the one place that decides how a version runs: a graph the
server converted and verified itself, made only of allowlisted operators, runs
in-process under onnxruntime; everything else (scikit-learn estimators, uploaded
``.onnx`` files, graphs with other operators) runs in confined inference
processes. The bound is both a count and a memory budget in MB; the least
recently used runtimes are closed until both hold. The one just loaded stays.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.observability import metrics
from app.registry.errors import ModelFileError
from app.serving.runtimes.base import Runtime
from app.serving.runtimes.isolated import IsolatedRuntime
from app.serving.runtimes.onnx import InProcessOnnx
from app.web.errors import APIError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Isolation:
    """How inference processes are started (from the app's settings)."""

    trusted_modules: tuple[str, ...] = ()
    memory_mb: int = 2048
    processes: int = 1


def open_runtime(
    sha256: str,
    data: bytes,
    file_format: str,
    schema: dict[str, Any],
    converted: bool,
    isolation: Isolation,
) -> Runtime:
    """The runtime for these bytes: in-process only for our own verified graphs."""
    if converted:
        try:
            return InProcessOnnx(sha256, data, schema)
        except ModelFileError as exc:
            log.info("graph %s runs isolated: %s", sha256[:12], exc.message)
    return IsolatedRuntime(
        sha256,
        data,
        "onnx" if converted else file_format,
        schema,
        trusted_modules=isolation.trusted_modules,
        memory_mb=isolation.memory_mb,
        processes=isolation.processes,
    )


class ModelCache:
    """LRU of loaded runtimes; bytes are read from the database only on a miss."""

    def __init__(
        self,
        capacity: int,
        isolation: Isolation = Isolation(),
        max_bytes: int | None = None,
    ):
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes
        self.isolation = isolation
        self._models: OrderedDict[str, Runtime] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.evictions = 0

    def get(
        self,
        sha256: str,
        schema: dict[str, Any],
        file_format: str,
        read_bytes: Callable[[], bytes],
        converted: bool = False,
    ) -> Runtime:
        """Return the runtime for ``sha256``, loading it once if needed.

        ``sha256`` names the bytes ``read_bytes`` returns: the artifact, or the
        version's converted ONNX graph when ``converted``.
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
                model = self._load(sha256, schema, file_format, read_bytes(), converted)
            with self._lock:
                self._models[sha256] = model
                self._models.move_to_end(sha256)
                self._evict()
                self._loading.pop(sha256, None)
        return model

    def _evict(self) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self.capacity
            or (self.max_bytes is not None and self.bytes_used > self.max_bytes)
        ):
            _, evicted = self._models.popitem(last=False)
            evicted.close()
            self.evictions += 1
        if self.max_bytes is not None and self.bytes_used > self.max_bytes:
            log.warning(
                "one model (%d bytes) exceeds the model cache budget of %d "
                "bytes; it is kept alone",
                self.bytes_used,
                self.max_bytes,
            )

    def _load(
        self, sha256: str, schema, file_format: str, data: bytes, converted: bool
    ) -> Runtime:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise APIError(
                503,
                "artifact_corrupt",
                "the stored artifact does not match its sha256; the "
                "version cannot be loaded until an admin replaces it",
            )
        started = time.perf_counter()
        try:
            runtime = open_runtime(
                sha256, data, file_format, schema, converted, self.isolation
            )
        except ModelFileError as exc:
            raise APIError(
                503,
                "artifact_corrupt",
                f"the stored model cannot be loaded: {exc.message}",
            ) from exc
        runtime.load_seconds = time.perf_counter() - started
        metrics.MODEL_LOAD.labels("onnx" if converted else file_format).observe(
            runtime.load_seconds
        )
        return runtime

    @property
    def bytes_used(self) -> int:
        return sum(m.footprint for m in self._models.values())

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._models

    def loaded(self) -> list[Runtime]:
        """The runtimes held now, least recently used first."""
        with self._lock:
            return list(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
        for model in models:
            model.close()
