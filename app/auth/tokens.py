"""OAuth 2.0 access tokens (JWT) from an OpenID provider, for scripts.

A script that got a token from the provider (client credentials) sends it as
``Authorization: Bearer <jwt>`` where it would send an API key. The token is checked
with joserfc (Authlib's JOSE library) against the provider's published keys (JWKS,
found through its discovery document): signature, issuer, audience and expiry. Its
``scope`` claim gives the ModelDock scopes (``modeldock:predict`` → ``predict``).

Each worker keeps the keys in memory. A token signed with a key it does not know
(the provider rotated its keys) makes it fetch them again, at most once per
``MODELDOCK_OIDC_JWKS_REFETCH_SECONDS``, so that a stream of forged key ids cannot
turn into a stream of requests to the provider.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from app.auth.credentials import Principal
from app.models.users import SCOPES
from app.web.errors import APIError

# Asymmetric signatures only: never "none", never a shared secret (HS*).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
# Keys are refetched at least this often even when no unknown key id shows up, so
# that a key the provider withdrew stops being trusted.
KEYS_MAX_AGE_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 5
VERIFIED_CACHE_SIZE = 10_000


def looks_like_jwt(value: str) -> bool:
    """A JWT (three base64url parts); API keys (``mdk_…``) have no dots."""
    return value.count(".") == 2


def _refused(code: str, message: str) -> APIError:
    return APIError(401, code, message, "Authorization")


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document from the provider (discovery, JWKS)."""
    response = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


class TokenVerifier:
    """Checks access tokens of one issuer and audience; caches the issuer's keys."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        scope_prefix: str = "modeldock:",
        leeway: int = 30,
        refetch_seconds: float = 60.0,
        fetch: Callable[[str], dict[str, Any]] = fetch_json,
    ):
        self.issuer = issuer  # exactly as the provider writes it in "iss"
        self.audience = audience
        self.scope_prefix = scope_prefix
        self.leeway = leeway
        self.refetch_seconds = refetch_seconds
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._verified: dict[bytes, Principal] = {}
        self.fetches = 0  # how often the keys were fetched (for tests and metrics)

    def principal(self, token: str) -> Principal:
        """The principal a valid token stands for; else an APIError 401 (or 503).

        A script sends the same token until it expires: verified tokens are kept
        (by their sha256) until then, since a signature check costs more than the
        prediction it guards (about 0.8 ms against 0.3)."""
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if (
            known is not None
            and known.expires_at.timestamp() + self.leeway > time.time()
        ):
            return known
        principal = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[digest] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        header, unverified = self._peek(token)
        if header.get("alg") not in ALGORITHMS:
            raise _refused(
                "invalid_token", "the token's signature algorithm is refused"
            )
        # Checked before any key look-up: a token of another issuer never makes this
        # worker fetch keys. (Checked again, signed, below.)
        if unverified.get("iss") != self.issuer:
            raise _refused(
                "token_wrong_issuer",
                f"the token was not issued by {self.issuer}",
            )
        keys = self._keys_for(header.get("kid"))
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as error:
            raise _refused(
                "invalid_token", "the token's signature does not verify"
            ) from error
        claims = decoded.claims
        self._check_claims(claims)
        scopes = self._scopes(claims)
        subject = str(claims["sub"])
        return Principal(
            user_id=None,
            username=subject,
            role="admin" if "admin" in scopes else "user",
            scopes=scopes,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_subject=subject,
        )

    def _peek(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and the claims, unverified (used only to refuse early)."""
        try:
            compact = jws.extract_compact(token.encode("ascii"))
            claims = json.loads(compact.payload)
        except (JoseError, ValueError, UnicodeError) as error:
            raise _refused("invalid_token", "the bearer token is not a JWT") from error
        if not isinstance(claims, dict):
            raise _refused("invalid_token", "the token's claims are not an object")
        return compact.headers(), claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise _refused(
                "token_expired", "the token has expired: get a new one"
            ) from error
        except (InvalidClaimError, MissingClaimError) as error:
            claim = getattr(error, "claim", "")
            if claim == "aud":
                raise _refused(
                    "token_wrong_audience",
                    f"the token is not meant for this server (audience "
                    f"{self.audience} expected)",
                ) from error
            if claim == "iss":
                raise _refused(
                    "token_wrong_issuer", f"the token was not issued by {self.issuer}"
                ) from error
            raise _refused("invalid_token", f"the token's claims: {error}") from error
        except JoseError as error:  # e.g. not valid yet (nbf, iat in the future)
            raise _refused("invalid_token", f"the token's claims: {error}") from error

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        """ModelDock's scopes among the token's (``scope``: space-separated; some
        providers send a list in ``scp``)."""
        raw = claims.get("scope", claims.get("scp", ""))
        values = raw.split() if isinstance(raw, str) else list(raw or [])
        prefix = self.scope_prefix
        return frozenset(
            value[len(prefix) :]
            for value in values
            if isinstance(value, str)
            and value.startswith(prefix)
            and value[len(prefix) :] in SCOPES
        )

    def _keys_for(self, kid: str | None) -> KeySet:
        """The provider's keys, fetched again when ``kid`` is new (key rotation)."""
        if self._needs_fetch(kid):
            with self._lock:  # one fetch per worker at a time; the others wait
                if self._needs_fetch(kid) and (
                    time.monotonic() - self._fetched_at >= self.refetch_seconds
                ):
                    self._refresh()
        if self._keys is None:
            raise APIError(
                503,
                "token_keys_unavailable",
                "the identity provider's signing keys cannot be fetched; "
                "try again shortly",
                "Authorization",
            )
        if kid is not None and kid not in self._kids:
            raise _refused(
                "invalid_token",
                "the token is signed with a key the provider does not publish",
            )
        return self._keys

    def _needs_fetch(self, kid: str | None) -> bool:
        return (
            self._keys is None
            or time.monotonic() - self._fetched_at > KEYS_MAX_AGE_SECONDS
            or (kid is not None and kid not in self._kids)
        )

    def _refresh(self) -> None:
        """Fetch the keys (discovery document → ``jwks_uri``); on failure keep the
        keys we have (a failed fetch waits the floor too)."""
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            discovery = self._fetch(
                self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            if discovery.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            keys = KeySet.import_key_set(self._fetch(discovery["jwks_uri"]))
        except (requests.RequestException, JoseError, KeyError, TypeError, ValueError):
            return
        self._keys = keys
        self._kids = frozenset(key.kid for key in keys.keys if key.kid)
