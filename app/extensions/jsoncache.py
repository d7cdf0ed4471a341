"""flask-caching's Redis backend storing JSON: nothing read from Redis is unpickled.

The stock backend pickles values, so anyone able to write to Redis could make the
app run code the next time it reads the cache. With JSON values the worst such a
write can do is spoil a cached value (read back as a miss).
"""

from typing import Any

from cachelib.serializers import JSONSerializer
from flask_caching.backends.rediscache import RedisCache


class MissTolerantJSONSerializer(JSONSerializer):
    """cachelib's JSON serializer, but a missing key (``None``) is a quiet miss.

    cachelib's own one parses the ``None`` Redis returns for a missing key and
    logs a warning for every cache miss.
    """

    def loads(self, bvalue: Any, *args: Any, **kwargs: Any) -> Any:
        return None if bvalue is None else super().loads(bvalue, *args, **kwargs)


class JSONRedisCache(RedisCache):
    """The cache backend config.finalize names with Redis:
    ``CACHE_TYPE = "app.extensions.jsoncache.JSONRedisCache"``."""

    serializer = MissTolerantJSONSerializer()
