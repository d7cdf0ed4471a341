"""The per-request routing decision: sticky canary routing picks stable or canary.

The rollout state it reads (which version each alias points to, the canary's
weight) is in the routing snapshot; changing it is ``app.rollout``'s business.
"""

from __future__ import annotations

import hashlib

from flask import g, has_request_context, request

from app.serving.snapshot import ModelInfo, VersionInfo

CLIENT_ID_HEADER = "X-Client-Id"


def client_identity() -> str:
    """Who a request comes from, for sticky routing: API key or token, client id,
    or address."""
    if not has_request_context():
        return "cli"
    principal = g.get("principal")
    if principal is not None and principal.client_key is not None:
        return principal.client_key
    client_id = request.headers.get(CLIENT_ID_HEADER, "")[:128]
    if client_id:
        return f"client:{client_id}"
    return f"ip:{request.remote_addr}"


def bucket(model_name: str, identity: str) -> float:
    """A stable point in [0, 100) per (model, client): below the weight = canary.

    Raising the weight only adds clients to the canary; nobody flips back.
    """
    digest = hashlib.blake2b(f"{model_name}\0{identity}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 10_000 / 100.0


def route(model: ModelInfo) -> tuple[str, VersionInfo | None]:
    """Pick the alias (and version) that answers this request for ``model``."""
    canary = model.aliases.get("canary")
    if (
        canary is not None
        and canary[1] > 0
        and bucket(model.name, client_identity()) < canary[1]
    ):
        return "canary", model.versions.get(canary[0])
    return "stable", model.alias_version("stable")
