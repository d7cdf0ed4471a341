"""Rate limits in Redis leased to workers in blocks: never over the limit (real
Redis)."""

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


def redis_count(storage, limit, identifier) -> int:
    value = redis.Redis.from_url(REDIS_URL).get(
        storage.prefixed_key(limit.key_for(identifier))
    )
    return int(value or 0)


def worker(storage):
    """A second worker: its own storage object on the same Redis keys."""
    return storage_from_string(f"modeldock+{REDIS_URL}", key_prefix=storage.key_prefix)


def test_small_limits_are_counted_request_by_request_in_redis(storage):
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("3 per minute")
    assert [limiter.hit(limit, "k") for _ in range(4)] == [True, True, True, False]
    assert redis_count(storage, limit, "k") == 3  # the refusal needed no round trip
    stats = limiter.get_window_stats(limit, "k")
    assert stats.remaining == 0 and 55 < stats.reset_time - time.time() <= 60
    # Another worker counts in the same Redis key: the limit is already used up.
    assert FixedWindowRateLimiter(worker(storage)).hit(limit, "k") is False


def test_large_limits_lease_blocks_and_never_exceed_the_limit(storage):
    limit = parse("1000 per minute")  # blocks of 10
    first, second = (
        FixedWindowRateLimiter(storage),
        FixedWindowRateLimiter(worker(storage)),
    )
    assert all(first.hit(limit, "k") for _ in range(25))
    assert redis_count(storage, limit, "k") == 30  # three round trips, not 25
    assert first.get_window_stats(limit, "k").remaining == 1000 - 25
    assert second.hit(limit, "k")
    assert redis_count(storage, limit, "k") == 40
    allowed = 26
    for _ in range(1200):  # both workers, alternately, far past the limit
        allowed += first.hit(limit, "k") + second.hit(limit, "k")
    # Never more than the limit; at most one unused block (of the other worker) lost.
    assert 1000 - 10 <= allowed <= 1000
    assert first.get_window_stats(limit, "k").remaining == 0


def test_a_new_window_starts_a_new_lease(storage):
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("2 per second")
    assert [limiter.hit(limit, "k") for _ in range(3)] == [True, True, False]
    time.sleep(1.2)
    assert limiter.hit(limit, "k") is True
    assert redis_count(storage, limit, "k") == 1


def test_prediction_responses_carry_rate_limit_headers(tmp_path, iris):
    from tests.conftest import make_keys, upload

    # A limit no other run uses gives this test its own Redis key (the limiter
    # extension is shared by every app in the process, its key prefix with it).
    amount = 1000 + uuid.uuid4().int % 100000
    with running_app(
        "sqlite",
        tmp_path,
        REDIS_URL=REDIS_URL,
        RATELIMIT_ENABLED=True,
        MODELDOCK_RATELIMIT_DEFAULT=f"{amount} per minute",
    ) as app:
        assert app.config["RATELIMIT_STORAGE_URI"].startswith("modeldock+redis://")
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        remaining = []
        for _ in range(3):
            with client.post(
                "/api/v1/models/iris/predict",
                headers=auth(keys.predict),
                json={"instances": iris.X[:1].tolist()},
            ) as response:
                assert response.status_code == 200
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
                assert int(response.headers["X-RateLimit-Reset"]) > time.time()
        assert remaining == [amount - 1, amount - 2, amount - 3]
