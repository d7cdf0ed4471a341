"""Prediction cache: identical inputs to the same version answer without predicting.

The key is the version's artifact sha256 plus a hash of the validated input matrix
(dtype, shape and bytes), so two requests that differ only in JSON spelling (rows,
named rows, columns) share an entry. Storage is flask-caching: with ``REDIS_URL``
its Redis backend with JSON values (app/jsoncache.py: read back with a JSON parser
only, so someone who can write to Redis can at worst spoil an answer, never run
code in the app), shared by every worker; without it a ``SimpleCache`` per worker.
A Redis that stops answering is skipped for a few seconds at a time and never fails
a prediction.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np
import redis
from flask import Flask, current_app
from flask_caching import Cache
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.observability import metrics

log = logging.getLogger(__name__)
MAX_ROWS = 1000  # larger batches are rarely repeated; not worth the memory
LOCAL_CAPACITY = 4096  # entries per worker without Redis
PAUSE_AFTER_ERROR = 2.0  # seconds without trying Redis after it failed


class PredictionCache:
    """Get and put JSON answers by (sha256, input hash); counts hits and misses."""

    def __init__(self, ttl: int, store: Cache, shared: bool):
        self.ttl = ttl
        self._store = store  # a flask-caching Cache bound to this app
        self._shared = shared  # Redis: errors pause the cache instead of failing
        self._paused_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def key(self, sha256: str, rows: np.ndarray) -> str | None:
        """The cache key for these rows, or None when they are not worth caching."""
        if not self.enabled or rows.dtype.kind not in "iuf" or len(rows) > MAX_ROWS:
            return None
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{rows.dtype.str}{rows.shape}".encode())
        digest.update(np.ascontiguousarray(rows).tobytes())
        return f"{sha256}:{digest.hexdigest()}"

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the cached answer, counting a hit or a miss."""
        value = _valid(self._call(self._store.get, key))
        (metrics.CACHE_HITS if value is not None else metrics.CACHE_MISSES).inc()
        return value

    def put(self, key: str, labels: list, probabilities: list | None) -> None:
        """Store an answer as JSON for ``ttl`` seconds."""
        self._call(
            self._store.set,
            key,
            {"labels": labels, "probabilities": probabilities},
            self.ttl,
        )

    def _call(self, operation, *args):
        if not self._shared:
            return operation(*args)
        if time.monotonic() < self._paused_until:
            return None
        try:
            return operation(*args)
        except redis.RedisError as exc:
            metrics.CACHE_ERRORS.inc()
            log.warning(
                "prediction cache unavailable, predicting without it for %.0f s: %s",
                PAUSE_AFTER_ERROR,
                exc,
            )
            self._paused_until = time.monotonic() + PAUSE_AFTER_ERROR
            return None


def _valid(value: Any) -> dict[str, Any] | None:
    """A stored answer of the expected shape; anything else is a miss."""
    if not isinstance(value, dict) or not isinstance(value.get("labels"), list):
        return None
    if not isinstance(value.get("probabilities"), (list, type(None))):
        return None
    return value


def init_app(app: Flask) -> None:
    ttl = app.config["MODELDOCK_PREDICTION_CACHE_SECONDS"]
    redis_url = app.config.get("REDIS_URL")
    config = {
        "CACHE_KEY_PREFIX": app.config["MODELDOCK_REDIS_PREFIX"] + "pred:",
        "CACHE_DEFAULT_TIMEOUT": ttl,
    }
    if redis_url:
        config.update(
            CACHE_TYPE="app.extensions.jsoncache.JSONRedisCache",
            CACHE_REDIS_URL=redis_url,
            CACHE_OPTIONS={
                "socket_connect_timeout": 0.25,
                "socket_timeout": 0.25,
                "retry": Retry(NoBackoff(), 0),
            },
        )
    else:
        config.update(CACHE_TYPE="SimpleCache", CACHE_THRESHOLD=LOCAL_CAPACITY)
    store = Cache()
    store.init_app(app, config=config)
    app.extensions["modeldock.prediction_cache"] = PredictionCache(
        ttl, store, shared=bool(redis_url)
    )


def prediction_cache() -> PredictionCache:
    """The current app's prediction cache."""
    return current_app.extensions["modeldock.prediction_cache"]
