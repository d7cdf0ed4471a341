"""Rate limits in Redis: one round trip per request, headers still right (real Redis)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from tests.conftest import auth, running_app
from tests.test_redis import REDIS_URL


@pytest.fixture
def storage():
    prefix = f"test-{uuid.uuid4().hex}"
    store = storage_from_string(f"modeldock+{REDIS_URL}", key_prefix=prefix)
    yield store
    store.reset()


def test_count_and_expiry_come_back_with_the_increment(storage):
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("3 per minute")
    assert [limiter.hit(limit, "k") for _ in range(4)] == [True, True, True, False]
    stats = limiter.get_window_stats(limit, "k")
    assert stats.remaining == 0 and 55 < stats.reset_time - time.time() <= 60
    # The header read after a hit is answered from the hit's reply, not Redis:
    # delete the key behind its back and the same thread still sees the count.
    limiter.hit(limit, "other")
    redis.Redis.from_url(REDIS_URL).delete(storage.prefixed_key(
        limit.key_for("other")))
    assert limiter.get_window_stats(limit, "other").remaining == 2
    # Another worker (another storage) counts in the same Redis key.
    second = storage_from_string(f"modeldock+{REDIS_URL}",
                                 key_prefix=storage.key_prefix)
    assert FixedWindowRateLimiter(second).hit(limit, "k") is False


def test_prediction_responses_carry_rate_limit_headers(tmp_path, iris):
    from tests.conftest import make_keys, upload

    # A limit no other run uses gives this test its own Redis key (the limiter
    # extension is shared by every app in the process, its key prefix with it).
    amount = 1000 + uuid.uuid4().int % 100000
    with running_app("sqlite", tmp_path, REDIS_URL=REDIS_URL, RATELIMIT_ENABLED=True,
                     MODELDOCK_RATELIMIT_DEFAULT=f"{amount} per minute") as app:
        assert app.config["RATELIMIT_STORAGE_URI"].startswith("modeldock+redis://")
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        remaining = []
        for _ in range(3):
            with client.post("/api/v1/models/iris/predict", headers=auth(keys.predict),
                             json={"instances": iris.X[:1].tolist()}) as response:
                assert response.status_code == 200
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
                assert int(response.headers["X-RateLimit-Reset"]) > time.time()
        assert remaining == [amount - 1, amount - 2, amount - 3]
