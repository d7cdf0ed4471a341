"""Database models, one module per entity family."""

from app.models.batch import BatchChunk, BatchJob
from app.models.drift import DriftCount, DriftReference, DriftStat, DriftWindow
from app.models.feedback import Feedback
from app.models.logs import AuditEvent, RequestLog, ShadowResult
from app.models.registry import (
    Activation,
    MLModel,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    RegistryState,
)
from app.models.users import ApiKey, User

__all__ = [
    "Activation",
    "ApiKey",
    "AuditEvent",
    "Feedback",
    "DriftCount",
    "DriftReference",
    "DriftStat",
    "DriftWindow",
    "BatchChunk",
    "BatchJob",
    "MLModel",
    "ModelAlias",
    "ModelArtifact",
    "ModelVersion",
    "RegistryState",
    "RequestLog",
    "ShadowResult",
    "User",
]
