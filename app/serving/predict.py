"""Prediction: resolve the version, load it from the worker cache, predict, format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import current_app, g

from app import metrics
from app.errors import APIError
from app.registry.cache import LoadedModel
from app.registry.service import artifact_bytes
from app.serving.prediction_cache import prediction_cache
from app.serving.routing import ModelInfo, VersionInfo
from app.serving.state import serving_state


@dataclass
class Prediction:
    """The outcome of one prediction request, before it is shaped for a protocol."""

    model: ModelInfo
    version: VersionInfo
    labels: np.ndarray
    probabilities: np.ndarray | None
    classes: list | None

    def native(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model.name,
            "version": self.version.number,
            "predictions": self.labels.tolist(),
        }
        if self.classes is not None:
            body["classes"] = self.classes
            if self.probabilities is not None:
                body["probabilities"] = self.probabilities.tolist()
        body["request_id"] = g.get("request_id")
        return body


def resolve(name: str, number: int | None = None,
            alias: str = "stable") -> tuple[ModelInfo, VersionInfo]:
    """Find the version that answers: ``number`` if pinned, else the alias's version."""
    model = serving_state().routing.snapshot().models.get(name)
    if model is None:
        raise APIError(404, "model_not_found", f"no model named '{name}'", "model")
    if number is not None:
        version = model.versions.get(number)
        if version is None:
            raise APIError(404, "version_not_found",
                           f"model '{name}' has no version {number}", "version")
        if version.status != "ready":
            raise APIError(409, "version_archived",
                           f"version {number} of '{name}' is archived", "version")
    else:
        version = model.alias_version(alias)
        if version is None:
            raise APIError(404, "no_active_version",
                           f"model '{name}' has no {alias} version", "model")
    g.log_model, g.log_version = name, version.number
    return model, version


def load(version: VersionInfo) -> LoadedModel:
    """Return the loaded model of ``version`` (reads its bytes only on a cache miss)."""
    return serving_state().models.get(
        version.sha256, version.schema, version.file_format,
        lambda: artifact_bytes(version.id))


def max_rows() -> int:
    return current_app.config["MODELDOCK_MAX_BATCH_ROWS"]


def run(model: ModelInfo, version: VersionInfo, rows: np.ndarray) -> Prediction:
    """Predict validated ``rows`` with ``version`` (from the cache if seen before)."""
    g.log_rows = len(rows)
    cache = prediction_cache()
    key = cache.key(version.sha256, rows)
    cached = cache.get(key) if key else None
    if cached is not None:
        labels = np.asarray(cached["labels"])
        probabilities = None if cached["probabilities"] is None \
            else np.asarray(cached["probabilities"])
        classes = version.schema.get("classes")
    else:
        loaded = load(version)
        try:
            labels, probabilities = loaded.predict(rows)
        except Exception as exc:  # a model that cannot handle these values
            raise APIError(422, "prediction_failed",
                           f"the model could not predict these rows: {exc}",
                           "instances") from exc
        labels, classes = np.asarray(labels), loaded.classes
        if key:
            cache.put(key, labels.tolist(), None if probabilities is None
                      else np.asarray(probabilities).tolist())
    if classes is not None:
        metrics.count_predictions(model.name, labels)
    return Prediction(model, version, labels, probabilities, classes)


def warm_up() -> int:
    """Load every version an alias points to into this worker's cache; return how many.

    gunicorn calls it before a new worker accepts requests, so that no client waits
    for a model to load (and a reload does not slow the first requests down).
    """
    loaded = 0
    for model in serving_state().routing.snapshot().models.values():
        for alias in model.aliases:
            version = model.alias_version(alias)
            if version is not None and version.status == "ready":
                load(version)
                loaded += 1
    return loaded
