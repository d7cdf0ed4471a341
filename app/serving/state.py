"""The serving state of one worker: routing snapshot, loaded runtimes, shadow runner."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from flask import Flask, current_app

from app.registry.artifacts import artifact_bytes, onnx_bytes
from app.registry.runtime import batching
from app.serving.batching import MicroBatcher
from app.serving.runtimes.base import NotExplainable, Runtime
from app.serving.runtimes.cache import Isolation, ModelCache
from app.serving.shadow import ShadowRunner
from app.serving.snapshot import ModelInfo, Routing, Snapshot, VersionInfo

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    routing: Routing
    models: ModelCache
    shadow: ShadowRunner
    # The deployment's micro-batching defaults: (max rows, max wait in ms).
    default_batching: tuple[int, float] = (0, 2.0)
    default_timeout: float = 10.0
    _batch_lock: threading.Lock = field(default_factory=threading.Lock)

    def batching_for(self, model: ModelInfo) -> tuple[int, float] | None:
        """(max rows, max wait in seconds) for a model's isolated path, or None."""
        return batching(
            model.batch_max_rows, model.batch_max_wait_ms, self.default_batching
        )

    def deadline_for(self, model: ModelInfo | None) -> float:
        """When a prediction of ``model`` starting now must have finished."""
        seconds = (
            getattr(model, "predict_timeout_seconds", None) or self.default_timeout
        )
        return time.monotonic() + seconds

    def predict(
        self,
        loaded: Runtime,
        rows: np.ndarray,
        settings: tuple[int, float] | None = None,
        deadline: float | None = None,
    ):
        """Predict with a runtime, through a micro-batcher when ``settings``."""
        if deadline is None:
            deadline = self.deadline_for(None)
        if settings is None or not loaded.batchable:
            return loaded.predict(rows, deadline)
        batcher = loaded.batcher
        if batcher is None or (batcher.max_rows, batcher.max_wait) != settings:
            with (
                self._batch_lock
            ):  # new settings: a new batcher (the old one idles out)
                if (
                    loaded.batcher is None
                    or (loaded.batcher.max_rows, loaded.batcher.max_wait) != settings
                ):
                    loaded.batcher = MicroBatcher(loaded.predict, *settings)
                batcher = loaded.batcher
        return batcher.predict(rows, deadline)

    def load(
        self,
        sha256: str,
        schema: dict,
        file_format: str,
        version_id: int,
        runtime: str = "sklearn",
        onnx_sha256: str | None = None,
    ) -> Runtime:
        """Return a loaded runtime; its bytes are read from the database only on a miss.

        With ``runtime="onnx"`` a converted version is served from its verified
        graph (``onnx_sha256``); anything else from its artifact.
        """
        if runtime == "onnx" and file_format != "onnx":
            return self.models.get(
                onnx_sha256,
                schema,
                file_format,
                lambda: onnx_bytes(version_id),
                converted=True,
            )
        return self.models.get(
            sha256, schema, file_format, lambda: artifact_bytes(version_id)
        )

    def load_estimator(self, version: VersionInfo) -> Runtime:
        """The version's own artifact in inference processes, whatever serves it
        (explanations need the estimator; a converted graph does not carry it)."""
        if version.file_format == "onnx":
            raise NotExplainable("ONNX graph (uploaded as .onnx)")
        return self.load(
            version.sha256, version.schema, version.file_format, version.id
        )

    def is_loaded(self, version: VersionInfo) -> bool:
        """True when this worker holds the version, as its runtime serves it."""
        converted = version.runtime == "onnx" and version.file_format != "onnx"
        return (version.onnx_sha256 if converted else version.sha256) in self.models

    def load_version(self, version: VersionInfo) -> Runtime:
        """Load a routed version with the runtime chosen for it."""
        return self.load(
            version.sha256,
            version.schema,
            version.file_format,
            version.id,
            version.runtime,
            version.onnx_sha256,
        )

    def close(self) -> None:
        """Close every loaded runtime (stops this worker's inference processes)."""
        self.models.clear()

    def warm(self, snapshot: Snapshot) -> None:
        """Load every version an alias points to, before the snapshot routes traffic."""
        for model in snapshot.models.values():
            for alias in model.aliases:
                version = model.alias_version(alias)
                try:
                    self.load_version(version)
                except Exception:  # the request will report it; keep warming others
                    log.exception("could not warm %s v%s", model.name, version.number)


def init_app(app: Flask) -> None:
    """Create this app's serving state (kept in ``app.extensions``)."""
    config = app.config
    isolation = Isolation(
        tuple(config["MODELDOCK_TRUSTED_MODULES"]),
        config["MODELDOCK_ISOLATED_MEMORY_MB"],
        config["MODELDOCK_ISOLATED_PROCESSES"],
    )
    state = ServingState(
        routing=Routing(app, config["MODELDOCK_ROUTING_REFRESH_SECONDS"]),
        models=ModelCache(
            config["MODELDOCK_MODEL_CACHE_SIZE"],
            isolation,
            int(config["MODELDOCK_MODEL_CACHE_MB"] * 1024 * 1024),
        ),
        shadow=ShadowRunner(app),
        default_batching=(
            config["MODELDOCK_MICROBATCH_MAX_ROWS"],
            config["MODELDOCK_MICROBATCH_MAX_WAIT_MS"],
        ),
        default_timeout=config["MODELDOCK_PREDICT_TIMEOUT_SECONDS"],
    )
    state.routing.warm = state.warm
    app.extensions["modeldock"] = state


def serving_state() -> ServingState:
    """Return the current app's serving state."""
    return current_app.extensions["modeldock"]
