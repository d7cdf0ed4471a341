"""Who a rate limit counts against: the API key or token when there is one, else the
address."""

from flask import Flask, current_app, g, request


def rate_limit_key() -> str:
    """Return the limiter bucket for this request."""
    # The Redis prefix goes into the bucket name (not RATELIMIT_KEY_PREFIX, which
    # flask-limiter reads only once per process).
    prefix = current_app.config["MODELDOCK_REDIS_PREFIX"]
    principal = getattr(g, "principal", None)
    client = principal.client_key if principal is not None else None
    if client is not None:  # an API key, or a token's subject
        return prefix + client
    return f"{prefix}ip:{request.remote_addr or 'unknown'}"


def api_rate_limit() -> str:
    """The limit for this request: the key's own limit, else the default."""
    principal = getattr(g, "principal", None)
    if principal is not None and principal.rate_limit:
        return principal.rate_limit
    return current_app.config["MODELDOCK_RATELIMIT_DEFAULT"]


def is_preflight() -> bool:
    """A limiter request filter: a browser's CORS preflight is never counted.

    It carries no API key, so counting it against the address would halve an
    anonymous browser client's budget for nothing.
    """
    return request.method == "OPTIONS"


def init_app(app: Flask) -> None:
    """Send Retry-After only where it means something (429, 503)."""

    @app.after_request
    def retry_after_only_when_refused(response):
        # flask-limiter adds Retry-After to every response it counted.
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response
