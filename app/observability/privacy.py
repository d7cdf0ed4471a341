"""What request logs may keep about a client: truncated addresses, redacted inputs."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import orjson

REDACTED = "[redacted]"
PAYLOAD_LIMIT = 64 * 1024  # JSON bytes kept per request; larger ones are summarised


@functools.lru_cache(maxsize=4096)  # clients repeat: parsing was half a log flush
def truncate_ip(address: str | None) -> str | None:
    """Keep the network, drop the host: IPv4 to /24, IPv6 to /48."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def redact(value: Any, fields: frozenset[str], feature_names: list[str] | None) -> Any:
    """Replace the values of ``fields`` wherever they appear in a request body.

    Named values (``{"age": 41}``, ``{"inputs": {"age": [...]}}``) are matched by
    key; positional rows (``[[41, 2.5]]``) by the model's feature names.
    """
    if isinstance(value, dict):
        return {
            k: REDACTED if k in fields else redact(v, fields, feature_names)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if (
            feature_names
            and len(value) == len(feature_names)
            and not any(isinstance(v, (list, dict)) for v in value)
        ):
            return [
                REDACTED if name in fields else v
                for name, v in zip(feature_names, value, strict=True)
            ]
        return [redact(v, fields, feature_names) for v in value]
    return value


def stored_payload(
    body: Any, fields: frozenset[str], feature_names: list[str] | None
) -> Any:
    """The form of a request body that goes into the request log (plain JSON)."""
    encoded = orjson.dumps(redact(body, fields, feature_names))  # NaN becomes null
    if len(encoded) > PAYLOAD_LIMIT:
        return {"truncated": True, "bytes": len(encoded)}
    return orjson.loads(encoded)
