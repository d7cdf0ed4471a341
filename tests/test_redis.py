"""With REDIS_URL set, rate limits and the cache are shared by every worker (real
Redis)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from tests.conftest import auth, make_keys, running_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fails loudly when Redis is down: this test needs the real one
    yield client
    client.close()


def test_rate_limits_are_counted_in_redis(tmp_path, redis_client):
    """Every request of a small limit is counted in Redis, where every worker sees it.

    Across real processes: tests/test_production_stack.py (two gunicorn workers
    behind nginx allow exactly 10 of 16 requests at 10 per minute) and
    tests/test_ratelimit_storage.py (two storages, as two workers, on one Redis).
    """
    prefix = f"test-{uuid.uuid4().hex}"
    settings = {
        "REDIS_URL": REDIS_URL,
        "RATELIMIT_ENABLED": True,
        "MODELDOCK_REDIS_PREFIX": prefix + ":",
        "MODELDOCK_RATELIMIT_DEFAULT": "3 per minute",
    }
    with running_app("sqlite", tmp_path, **settings) as app:
        keys = make_keys(app)
        client = app.test_client()
        statuses = [
            client.get("/api/v1/models", headers=auth(keys.predict)).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        counters = [
            int(redis_client.get(k)) for k in redis_client.scan_iter(f"*{prefix}*")
        ]
        assert counters == [3]  # the refusal was decided without another increment
        redis_client.delete(*redis_client.scan_iter(f"*{prefix}*"))


def test_cache_backend_is_redis(tmp_path, redis_client):
    with running_app(
        "sqlite",
        tmp_path,
        REDIS_URL=REDIS_URL,
        CACHE_KEY_PREFIX=f"test-{uuid.uuid4().hex}-",
    ) as app:
        from app.extensions import cache

        with app.app_context():
            cache.set("probe", {"answer": 42})
            assert cache.get("probe") == {"answer": 42}
            raw_keys = list(
                redis_client.scan_iter(f"{app.config['CACHE_KEY_PREFIX']}*")
            )
            assert len(raw_keys) == 1
            cache.delete("probe")
