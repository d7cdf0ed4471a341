"""With REDIS_URL set, rate limits and the cache are shared by every worker (real Redis)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from tests.conftest import auth, build_app, database, make_keys, running_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fails loudly when Redis is down: this test needs the real one
    yield client
    client.close()


def test_rate_limit_is_shared_between_two_workers(tmp_path, redis_client):
    prefix = f"test-{uuid.uuid4().hex}"
    settings = {"REDIS_URL": REDIS_URL, "RATELIMIT_ENABLED": True,
                "RATELIMIT_KEY_PREFIX": prefix,
                "MODELDOCK_RATELIMIT_DEFAULT": "3 per minute"}
    with database("sqlite", tmp_path) as (url, options):
        first = build_app(url, options, **settings)
        keys = make_keys(first)
        client = first.test_client()
        for _ in range(2):
            assert client.get("/api/v1/models", headers=auth(keys.predict)).status_code \
                == 200
        assert list(redis_client.scan_iter(f"*{prefix}*")), "nothing counted in Redis"
        # A second app on the same database and Redis stands for another worker:
        # it starts with no in-process state, so only Redis knows the count.
        second = build_app(url, options, **settings).test_client()
        assert second.get("/api/v1/models", headers=auth(keys.predict)).status_code \
            == 200
        limited = second.get("/api/v1/models", headers=auth(keys.predict))
        assert limited.status_code == 429
        assert limited.get_json()["error"]["code"] == "rate_limited"
        redis_client.delete(*redis_client.scan_iter(f"*{prefix}*"))


def test_cache_backend_is_redis(tmp_path, redis_client):
    with running_app("sqlite", tmp_path, REDIS_URL=REDIS_URL,
                     CACHE_KEY_PREFIX=f"test-{uuid.uuid4().hex}-") as app:
        from app.extensions import cache

        with app.app_context():
            cache.set("probe", {"answer": 42})
            assert cache.get("probe") == {"answer": 42}
            raw_keys = list(redis_client.scan_iter(f"{app.config['CACHE_KEY_PREFIX']}*"))
            assert len(raw_keys) == 1
            cache.delete("probe")
