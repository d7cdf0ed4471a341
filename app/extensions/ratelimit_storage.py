"""Rate-limit counters in Redis, leased to each worker in small blocks.

flask-limiter's Redis storage costs a round trip to Redis on every request (three,
with the ``X-RateLimit-*`` headers): at a few thousand requests per second that is
most of a worker's time (README "Benchmark"). Here a worker takes counts from the
shared Redis counter a block at a time (one ``INCRBY block`` + ``PTTL`` script) and
hands them out locally until the block is used up or the window ends:

- a limit is never exceeded: every count handed out was first taken in Redis, and
  a count above the limit is refused;
- a block is ``limit // LEASE_FRACTION`` counts (at most ``LEASE_MAX``), so a limit
  of 100 or less is counted exactly, request by request, in Redis; above that, counts
  a worker leased but did not use in a window are lost to the others, so a client
  may be refused up to ``(workers - 1)`` blocks early — at most about 1 % of its
  limit per extra worker;
- once a worker sees a window exhausted it refuses locally until the window ends,
  without asking Redis again.

With one block per hundred requests, the limiter's Redis cost all but disappears
from the request path. Redis outages keep the policy of ``MODELDOCK_REDIS_OUTAGE``:
a failed ``INCRBY`` raises like flask-limiter's own storage does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from limits.storage import RedisStorage

SCHEME = "modeldock+"
LEASE_FRACTION = 100  # a block is at most 1/100 of the limit
LEASE_MAX = 1000
MAX_LEASES = 10_000  # expired leases are dropped beyond this many keys

LEASE_SCRIPT = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""


def block_size(limit: int | None) -> int:
    """How many counts a worker takes from Redis at once for a limit of ``limit``."""
    if limit is None:
        return 1
    return max(1, min(limit // LEASE_FRACTION, LEASE_MAX))


def limit_of(key: str) -> int | None:
    """The limit's amount, read from a ``limits`` key
    (``…/<amount>/<multiples>/<unit>``)."""
    parts = key.rsplit("/", 3)
    try:
        return int(parts[1]) if len(parts) == 4 else None
    except ValueError:
        return None


@dataclass
class Lease:
    """Counts ``next``..``last`` of one window, taken from Redis by this worker."""

    next: int
    last: int
    expires_at: float  # epoch seconds: when the Redis window ends

    def valid(self, now: float) -> bool:
        return now < self.expires_at


class LeasingRedisStorage(RedisStorage):
    """limits' Redis storage whose ``incr`` is answered from a leased block."""

    STORAGE_SCHEME = [f"{SCHEME}redis", f"{SCHEME}rediss"]

    def __init__(self, uri: str, **options):
        super().__init__(uri.removeprefix(SCHEME), **options)
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_lease = self.get_connection().register_script(LEASE_SCRIPT)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        limit = limit_of(key)
        with self._lock:
            now = time.time()
            lease = self._leases.get(key)
            if lease is not None and lease.valid(now):
                if lease.next + amount - 1 <= lease.last:
                    lease.next += amount
                    return lease.next - 1
                if limit is not None and lease.last >= limit:
                    return lease.last + amount  # this window is used up: refuse
            block = max(amount, block_size(limit))
            current, ttl_ms = self.lua_lease([self.prefixed_key(key)], [expiry, block])
            current = int(current)
            first = current - block + 1
            self._remember(
                key,
                Lease(
                    next=first + amount,
                    last=current,
                    expires_at=now + max(int(ttl_ms), 0) / 1000,
                ),
                now,
            )
            return first + amount - 1

    def _remember(self, key: str, lease: Lease, now: float) -> None:
        if len(self._leases) >= MAX_LEASES:
            self._leases = {k: v for k, v in self._leases.items() if v.valid(now)}
        self._leases[key] = lease

    def _valid_lease(self, key: str) -> Lease | None:
        lease = self._leases.get(key)
        return lease if lease is not None and lease.valid(time.time()) else None

    def get(self, key: str) -> int:
        """The count this worker handed out last (headers), else Redis's."""
        lease = self._valid_lease(key)
        return lease.next - 1 if lease is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        lease = self._valid_lease(key)
        return lease.expires_at if lease is not None else super().get_expiry(key)

    def clear(self, key: str) -> None:
        with self._lock:
            self._leases.pop(key, None)
        super().clear(key)

    def reset(self) -> int | None:
        with self._lock:
            self._leases.clear()
        return super().reset()


def storage_uri(redis_url: str | None) -> str:
    """The limiter's storage: this one for Redis URLs, in-process memory otherwise."""
    if redis_url and redis_url.startswith(("redis://", "rediss://")):
        return SCHEME + redis_url
    return redis_url or "memory://"
