"""Prediction: resolve the version, load it from the worker cache, predict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import current_app, g

from app.observability import metrics
from app.observability.sketch import sketch
from app.serving import canary
from app.serving.prediction_cache import prediction_cache
from app.serving.runtimes.base import Runtime
from app.serving.snapshot import ModelInfo, Snapshot, VersionInfo
from app.serving.state import serving_state
from app.web.errors import APIError


@dataclass
class Prediction:
    """The outcome of one prediction request, before a protocol's codec shapes it."""

    model: ModelInfo
    version: VersionInfo
    labels: np.ndarray
    probabilities: np.ndarray | None
    classes: list | None


def resolve(
    name: str, number: int | None = None, alias: str | None = None
) -> tuple[ModelInfo, VersionInfo]:
    """Find the version that answers.

    A pinned ``number`` always wins; a named ``alias`` (TF Serving labels) answers
    with that alias's version; otherwise sticky canary routing picks stable or canary.
    Before a 404 the worker checks the change counter once: a model, version or
    alias just created through another worker is found (read-your-writes).
    """
    routing = serving_state().routing
    snapshot = routing.snapshot()
    try:
        return _resolve(snapshot, name, number, alias)
    except APIError as error:
        if error.status != 404:
            raise
        newer = routing.recheck(snapshot)
        if newer is None:
            raise
        return _resolve(newer, name, number, alias)


def _resolve(
    snapshot: Snapshot, name: str, number: int | None, alias: str | None
) -> tuple[ModelInfo, VersionInfo]:
    model = snapshot.models.get(name)
    if model is None:
        raise APIError(404, "model_not_found", f"no model named '{name}'", "model")
    g.route_alias = None
    if number is not None:
        version = model.versions.get(number)
        if version is None:
            raise APIError(
                404,
                "version_not_found",
                f"model '{name}' has no version {number}",
                "version",
            )
        if version.status != "ready":
            raise APIError(
                409,
                "version_archived",
                f"version {number} of '{name}' is archived",
                "version",
            )
    else:
        if alias is None:
            alias, version = canary.route(model)
        else:
            version = model.alias_version(alias)
        if version is None:
            raise APIError(
                404,
                "no_active_version",
                f"model '{name}' has no {alias} version",
                "model",
            )
        g.route_alias = alias
    g.log_model, g.log_version = name, version.number
    g.log_schema = version.schema  # the request log redacts payloads by its features
    return model, version


def load(version: VersionInfo) -> Runtime:
    """Return the loaded model of ``version`` (reads its bytes only on a cache miss)."""
    return serving_state().load_version(version)


def max_rows() -> int:
    return current_app.config["MODELDOCK_MAX_BATCH_ROWS"]


def run(model: ModelInfo, version: VersionInfo, rows: np.ndarray) -> Prediction:
    """Predict validated ``rows`` with ``version`` (from the cache if seen before)."""
    g.log_rows = len(rows)
    if version.drift is not None:  # counts per reference bin, flushed off the path
        sketch().observe(version.drift, rows)
    cache = prediction_cache()
    # The runtime is part of the key: switching it must not answer from the other.
    key = cache.key(f"{version.sha256}:{version.runtime}", rows)
    cached = cache.get(key) if key else None
    if cached is not None:
        labels = np.asarray(cached["labels"])
        probabilities = (
            None
            if cached["probabilities"] is None
            else np.asarray(cached["probabilities"])
        )
        classes = version.schema.get("classes")
    else:
        state = serving_state()
        deadline = state.deadline_for(model)
        loaded = state.load_version(version)
        labels, probabilities = state.predict(
            loaded, rows, state.batching_for(model), deadline
        )
        labels, classes = np.asarray(labels), loaded.classes
        if key:
            cache.put(
                key,
                labels.tolist(),
                None if probabilities is None else np.asarray(probabilities).tolist(),
            )
    # Kept in the request log (its writer thread makes them JSON), for feedback.
    g.log_predictions = (labels, probabilities if classes is not None else None)
    if classes is not None:
        metrics.count_predictions(model.name, labels)
    shadow = model.alias_version("shadow")
    if shadow is not None and g.get("route_alias") == "stable":
        serving_state().shadow.submit(model, version, shadow, rows, labels)
    return Prediction(model, version, labels, probabilities, classes)


def warm_up() -> int:
    """Load every version an alias points to; return how many (gunicorn calls it
    before a new worker accepts requests, so no client waits for a model load)."""
    state = serving_state()
    snapshot = state.routing.snapshot()
    state.warm(snapshot)  # a no-op for versions the first snapshot already loaded
    return sum(len(model.aliases) for model in snapshot.models.values())
