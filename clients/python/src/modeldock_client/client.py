"""``Client``: ModelDock's native JSON API over one pool of kept-alive connections,
with a timeout on every call and retries only where a retry is safe."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from modeldock_client._retry import Failure, attempt_log, policy
from modeldock_client._version import __version__
from modeldock_client.errors import (
    ConnectionFailedError,
    ExplainUnavailableError,
    ModelDockError,
    RequestTimeoutError,
    TransportError,
    UnexpectedResponseError,
    error_from_response,
)
from modeldock_client.types import Explanation, ModelInfo, Prediction, Probabilities

# Rows as lists or {feature: value} mappings, columns as {feature: [values]}, or
# anything with .tolist() (a numpy array).
Rows = (
    Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]
)

# 404 codes that mean "the route exists, the model or version does not".
_MODEL_404 = {"model_not_found", "version_not_found", "no_active_version"}


class Client:
    """A ModelDock API client; share one per process (it is thread-safe) and close
    it (or use ``with``) to release its connections.

    ``timeout`` bounds each attempt (connect, then each read); ``retries`` is how
    many times a call may be sent again after a connection failure or a 429, 502,
    503 or 504 answer, waiting ``backoff × 2^n`` seconds at most (full jitter,
    capped at ``backoff_max``) or what the server's ``Retry-After`` asks (capped
    at ``retry_after_max``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        pool_size: int = 10,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://: {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"modeldock-client/{__version__}",
        }
        self._retry = policy(retries, backoff, backoff_max, retry_after_max)
        # block=False: past pool_size concurrent calls, extra connections are
        # opened and dropped after use rather than making threads wait.
        self._pool = urllib3.PoolManager(maxsize=pool_size, block=False)

    # --- the API

    def predict(
        self,
        model: str,
        rows: Rows | Any,
        version: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Prediction:
        """Predict ``rows`` with the model's serving version (or ``version``)."""
        body, attempts = self._post_rows(model, "predict", rows, version, timeout)
        return Prediction(
            model=body["model"],
            version=body["version"],
            predictions=body["predictions"],
            classes=body.get("classes"),
            probabilities=body.get("probabilities"),
            request_id=body.get("request_id"),
            attempts=attempts,
        )

    def predict_proba(
        self,
        model: str,
        rows: Rows | Any,
        version: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Probabilities:
        """Class probabilities of ``rows``; an error for models without them
        (regressors, classifiers with no ``predict_proba``)."""
        body, attempts = self._post_rows(model, "predict", rows, version, timeout)
        if body.get("probabilities") is None or body.get("classes") is None:
            raise UnexpectedResponseError(
                f"model {model!r} version {body.get('version')} gives no "
                "probabilities (a regressor, or a classifier without predict_proba)",
                status=200,
                code="no_probabilities",
                request_id=body.get("request_id"),
                attempts=attempts,
            )
        return Probabilities(
            model=body["model"],
            version=body["version"],
            classes=body["classes"],
            probabilities=body["probabilities"],
            predictions=body["predictions"],
            request_id=body.get("request_id"),
            attempts=attempts,
        )

    def explain(
        self,
        model: str,
        rows: Rows | Any,
        version: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Explanation:
        """Per-feature contributions for ``rows`` (servers with the explain route)."""
        try:
            body, attempts = self._post_rows(model, "explain", rows, version, timeout)
        except ModelDockError as error:
            if error.status in (404, 405) and error.code not in _MODEL_404:
                raise ExplainUnavailableError(
                    f"this server has no explain route (POST .../{model}/explain "
                    f"answered {error.status} {error.code}): it needs a ModelDock "
                    "release with explanations",
                    status=error.status,
                    code=error.code,
                    request_id=error.request_id,
                    attempts=error.attempts,
                ) from error
            raise
        return Explanation(
            model=body.get("model", model),
            version=body.get("version"),
            body=body,
            request_id=body.get("request_id"),
            attempts=attempts,
        )

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Every model the key may see, by name."""
        body, _ = self._call("GET", "/api/v1/models", timeout=timeout)
        return [
            ModelInfo(
                name=entry["name"],
                task=entry.get("task"),
                active_version=entry.get("active_version"),
                versions=list(entry.get("versions") or []),
                description=entry.get("description"),
                aliases=dict(entry.get("aliases") or {}),
                created_at=entry.get("created_at"),
            )
            for entry in body["models"]
        ]

    # --- lifetime

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- one call

    def _post_rows(
        self,
        model: str,
        verb: str,
        rows: Any,
        version: int | None,
        timeout: float | None,
    ) -> tuple[dict[str, Any], int]:
        path = f"/api/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return self._call("POST", f"{path}/{verb}", _rows_body(rows), timeout=timeout)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Send one call (with its retries); return the JSON answer and how many
        requests it took."""
        headers = dict(self._headers)
        if method == "POST":
            # The same key on every retry of this call, so that a server that
            # records it can tell a retry from a second submission.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        seconds = self.timeout if timeout is None else timeout
        failures: list[Failure] = []
        token = attempt_log.set(failures)
        try:
            response = self._pool.request(
                method,
                self.base_url + path,
                json=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                retries=self._retry,
            )
        except (HTTPError, OSError) as exc:
            raise _transport_error(exc, self.base_url, max(len(failures), 1)) from exc
        finally:
            attempt_log.reset(token)
        # A last answer that used up the retries is itself in the failure log.
        attempts = len(failures) + (
            0 if failures and failures[-1].response is response else 1
        )
        return _read(response, attempts), attempts


def _rows_body(rows: Any) -> dict[str, Any]:
    """``{"instances": rows}``, or ``{"inputs": columns}`` for a mapping."""
    if hasattr(rows, "tolist"):  # numpy
        rows = rows.tolist()
    if isinstance(rows, Mapping):
        return {"inputs": {name: list(values) for name, values in rows.items()}}
    return {"instances": [dict(r) if isinstance(r, Mapping) else list(r) for r in rows]}


def _read(response: urllib3.BaseHTTPResponse, attempts: int) -> dict[str, Any]:
    """The JSON body of a 2xx answer; the matching error for anything else."""
    text = response.data.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if 200 <= response.status < 300:
        if not isinstance(body, dict):
            raise UnexpectedResponseError(
                f"expected a JSON object, got: {text[:200]!r}",
                status=response.status,
                attempts=attempts,
            )
        return body
    error = error_from_response(
        response.status,
        body,
        attempts=attempts,
        retry_after=response.headers.get("Retry-After"),
        text=text,
    )
    if 300 <= response.status < 400:
        error.message = (
            f"redirected to {response.headers.get('Location')!r}: use that base_url"
        )
        error.args = (error.message,)
    raise error


def _transport_error(exc: Exception, base_url: str, attempts: int) -> TransportError:
    """The client's error for a failure without an answer."""
    reason = exc.reason if isinstance(exc, MaxRetryError) else exc
    if isinstance(reason, ReadTimeoutError):
        return RequestTimeoutError(
            f"no answer from {base_url} within the timeout", attempts=attempts
        )
    if isinstance(reason, NewConnectionError | ProtocolError | OSError):
        return ConnectionFailedError(
            f"could not reach {base_url}: {reason}", attempts=attempts
        )
    if isinstance(reason, ConnectTimeoutError):
        return RequestTimeoutError(
            f"could not connect to {base_url} within the timeout", attempts=attempts
        )
    return TransportError(f"{base_url}: {reason}", attempts=attempts)
