"""Who a rate limit counts against: the API key when there is one, else the address."""

from flask import current_app, g, request


def rate_limit_key() -> str:
    """Return the limiter bucket for this request."""
    principal = getattr(g, "principal", None)
    if principal is not None and principal.api_key_id is not None:
        return f"key:{principal.api_key_id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def api_rate_limit() -> str:
    """The limit for this request: the key's own limit if it has one, else the default."""
    principal = getattr(g, "principal", None)
    if principal is not None and principal.rate_limit:
        return principal.rate_limit
    return current_app.config["MODELDOCK_RATELIMIT_DEFAULT"]
