"""Reading stored artifact bytes (only on a model-cache miss)."""

from sqlalchemy import select

from app.errors import APIError
from app.extensions import db
from app.models import ModelArtifact


def artifact_bytes(version_id: int) -> bytes:
    """Return a version's artifact bytes."""
    data = db.session.scalar(select(ModelArtifact.data).where(
        ModelArtifact.version_id == version_id))
    if data is None:
        raise APIError(500, "artifact_missing", "the version's artifact is missing")
    return data


def onnx_bytes(version_id: int) -> bytes:
    """Return the ONNX graph converted and verified at upload for a version."""
    data = db.session.scalar(select(ModelArtifact.onnx).where(
        ModelArtifact.version_id == version_id))
    if data is None:
        raise APIError(500, "artifact_missing", "the version's ONNX graph is missing")
    return data
