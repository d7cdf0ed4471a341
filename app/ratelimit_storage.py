"""Rate-limit counters in Redis with one round trip per request instead of three.

flask-limiter counts a request with one Redis call (INCRBY + EXPIRE in a script),
then reads the count and the window's expiry back with two more to fill the
``X-RateLimit-*`` headers. Here the counting script also returns the key's
remaining time, and the header reads in the same thread right after are answered
from that reply. Counting stays in Redis (shared by every worker); only the
headers may show a count that is a few requests old.
"""

from __future__ import annotations

import threading
import time

from limits.storage import RedisStorage

SCHEME = "modeldock+"

COUNT_SCRIPT = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""


class OneTripRedisStorage(RedisStorage):
    """limits' Redis storage whose ``incr`` also answers the next get/get_expiry."""

    STORAGE_SCHEME = [f"{SCHEME}redis", f"{SCHEME}rediss"]
    FRESH_SECONDS = 1.0  # a remembered count only serves the request that made it

    def __init__(self, uri: str, **options):
        super().__init__(uri.removeprefix(SCHEME), **options)
        self._last = threading.local()

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_count = self.get_connection().register_script(COUNT_SCRIPT)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl_ms = self.lua_count([self.prefixed_key(key)], [expiry, amount])
        now = time.time()
        self._last.entry = (key, int(current), now + max(int(ttl_ms), 0) / 1000, now)
        return int(current)

    def _remembered(self, key: str):
        entry = getattr(self._last, "entry", None)
        if entry is not None and entry[0] == key and \
                time.time() - entry[3] < self.FRESH_SECONDS:
            return entry
        return None

    def get(self, key: str) -> int:
        entry = self._remembered(key)
        return entry[1] if entry is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        entry = self._remembered(key)
        return entry[2] if entry is not None else super().get_expiry(key)


def storage_uri(redis_url: str | None) -> str:
    """The limiter's storage: this one for Redis URLs, in-process memory otherwise."""
    if redis_url and redis_url.startswith(("redis://", "rediss://")):
        return SCHEME + redis_url
    return redis_url or "memory://"
