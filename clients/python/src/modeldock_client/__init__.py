"""A typed Python client for ModelDock's JSON API that survives a busy server."""

from modeldock_client._version import __version__
from modeldock_client.client import Client
from modeldock_client.errors import (
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConflictError,
    ConnectionFailedError,
    ExplainUnavailableError,
    ModelDockError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)
from modeldock_client.types import (
    Explanation,
    ModelInfo,
    Prediction,
    Probabilities,
)

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConflictError",
    "ConnectionFailedError",
    "Explanation",
    "ExplainUnavailableError",
    "ModelDockError",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "Prediction",
    "Probabilities",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "__version__",
]
