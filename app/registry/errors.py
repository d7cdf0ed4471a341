"""Errors raised while reading, validating or storing model artifacts."""

from app.web.errors import APIError


class ModelFileError(APIError):
    """A model file that cannot be accepted (422 unless said otherwise)."""

    code = "invalid_model_file"

    def __init__(self, message: str, field: str = "file", code: str | None = None):
        super().__init__(422, code or type(self).code, message, field)


class UnsafeModelError(ModelFileError):
    """The file references a global that the loading policy refuses."""

    code = "unsafe_model_file"

    def __init__(self, reference: str, why: str = "it is not on the allowlist"):
        super().__init__(f"refused global '{reference}': {why}; nothing was executed")
        self.reference = reference
