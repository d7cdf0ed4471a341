"""flask-caching's Redis backend storing JSON: nothing read from Redis is unpickled.

The stock backend pickles values, so anyone able to write to Redis could make the
app run code the next time it reads the cache. With JSON values the worst such a
write can do is spoil a cached value.
"""

from cachelib.serializers import JSONSerializer
from flask_caching.backends.rediscache import RedisCache


class JSONRedisCache(RedisCache):
    """``CACHE_TYPE = "app.jsoncache.JSONRedisCache"`` (set by config.finalize)."""

    serializer = JSONSerializer()
