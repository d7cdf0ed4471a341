"""Reading stored artifact bytes (only on a model-cache miss)."""

from sqlalchemy import select

from app.extensions import db
from app.models import ModelArtifact
from app.web.errors import APIError


def _stored(column, version_id: int, what: str) -> bytes:
    data = db.session.scalar(
        select(column).where(ModelArtifact.version_id == version_id)
    )
    if data is None:
        raise APIError(500, "artifact_missing", f"the version's {what} is missing")
    return data


def artifact_bytes(version_id: int) -> bytes:
    """Return a version's artifact bytes (the uploaded file)."""
    return _stored(ModelArtifact.data, version_id, "artifact")


def onnx_bytes(version_id: int) -> bytes:
    """Return the ONNX graph converted and verified at upload for a version."""
    return _stored(ModelArtifact.onnx, version_id, "ONNX graph")
