"""Prediction cache: identical inputs to the same version answer without predicting.

The key is the version's artifact sha256 plus a hash of the validated input matrix
(dtype, shape and bytes), so two requests that differ only in JSON spelling (rows,
named rows, columns) share an entry. Values are plain JSON, read back with a JSON
parser only: someone who can write to Redis can at worst spoil an answer, never run
code in the app. With ``REDIS_URL`` the cache is shared by every worker; without it
each worker keeps a small LRU. A Redis that stops answering is skipped for a few
seconds at a time and never fails a prediction.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson
import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import metrics

log = logging.getLogger(__name__)
MAX_ROWS = 1000  # larger batches are rarely repeated; not worth the memory
LOCAL_CAPACITY = 4096
PAUSE_AFTER_ERROR = 2.0  # seconds without trying Redis after it failed


class PredictionCache:
    """Get and put JSON answers by (sha256, input hash); counts hits and misses."""

    def __init__(self, ttl: int, prefix: str, redis_url: str | None = None):
        self.ttl = ttl
        self.prefix = prefix + "pred:"
        self._redis = None
        if redis_url:
            self._redis = redis.Redis.from_url(
                redis_url, socket_connect_timeout=0.25, socket_timeout=0.25,
                retry=Retry(NoBackoff(), 0))
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
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
        return f"{self.prefix}{sha256}:{digest.hexdigest()}"

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the cached answer, counting a hit or a miss."""
        raw = self._read(key)
        value = _decode(raw) if raw is not None else None
        (metrics.CACHE_HITS if value is not None else metrics.CACHE_MISSES).inc()
        return value

    def put(self, key: str, labels: list, probabilities: list | None) -> None:
        """Store an answer as JSON for ``ttl`` seconds."""
        raw = orjson.dumps({"labels": labels, "probabilities": probabilities})
        if self._redis is None:
            with self._lock:
                self._local[key] = (time.monotonic() + self.ttl, raw)
                self._local.move_to_end(key)
                while len(self._local) > LOCAL_CAPACITY:
                    self._local.popitem(last=False)
            return
        if self._available():
            try:
                self._redis.set(key, raw, ex=self.ttl)
            except redis.RedisError as exc:
                self._failed(exc)

    def _read(self, key: str) -> bytes | None:
        if self._redis is None:
            with self._lock:
                entry = self._local.get(key)
                if entry is None or entry[0] < time.monotonic():
                    self._local.pop(key, None)
                    return None
                self._local.move_to_end(key)
                return entry[1]
        if not self._available():
            return None
        try:
            return self._redis.get(key)
        except redis.RedisError as exc:
            self._failed(exc)
            return None

    def _available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _failed(self, exc: Exception) -> None:
        metrics.CACHE_ERRORS.inc()
        if self._available():
            log.warning("prediction cache unavailable, predicting without it for "
                        "%.0f s: %s", PAUSE_AFTER_ERROR, exc)
        self._paused_until = time.monotonic() + PAUSE_AFTER_ERROR


def _decode(raw: bytes) -> dict[str, Any] | None:
    """Parse a stored answer; anything but the expected JSON shape is a miss."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("labels"), list):
        return None
    if not isinstance(value.get("probabilities"), (list, type(None))):
        return None
    return value


def init_app(app: Flask) -> None:
    app.extensions["modeldock.prediction_cache"] = PredictionCache(
        app.config["MODELDOCK_PREDICTION_CACHE_SECONDS"],
        app.config["MODELDOCK_REDIS_PREFIX"], app.config.get("REDIS_URL"))


def prediction_cache() -> PredictionCache:
    """The current app's prediction cache."""
    return current_app.extensions["modeldock.prediction_cache"]
