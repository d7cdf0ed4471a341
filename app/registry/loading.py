"""Turn artifact bytes into an estimator through the restricted loaders only
(or, for ``.onnx`` files, into a checked onnxruntime session)."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable

from joblib.numpy_pickle import NumpyUnpickler, _validate_fileobject_and_memmap

from app.registry.errors import ModelFileError
from app.registry.onnx_graph import OnnxModel
from app.registry.policy import judge

# File name suffix → format. Anything else is refused before it is read.
FORMAT_BY_SUFFIX = {
    ".skops": "skops",
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".onnx": "onnx",
}


def format_for_filename(filename: str) -> str:
    """Return the artifact format a file name announces, or raise."""
    lowered = filename.lower()
    for suffix, fmt in FORMAT_BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return fmt
    allowed = ", ".join(FORMAT_BY_SUFFIX)
    raise ModelFileError(f"unsupported file type '{filename}'; use one of {allowed}")


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader whose every global goes through the loading policy."""

    def __init__(self, file, trusted_modules: Iterable[str] = ()):
        super().__init__(file)
        self._trusted = tuple(trusted_modules)

    def find_class(self, module: str, name: str):
        return judge(module, name, self._trusted)


class RestrictedJoblibUnpickler(NumpyUnpickler):
    """joblib's reader (arrays stored beside the pickle) with the same policy."""

    def __init__(self, file, trusted_modules: Iterable[str] = ()):
        super().__init__("", file, ensure_native_byte_order=True)
        self._trusted = tuple(trusted_modules)

    def find_class(self, module: str, name: str):
        return judge(module, name, self._trusted)


def load_bytes(data: bytes, file_format: str, trusted_modules: Iterable[str] = ()):
    """Load an estimator from bytes; refuse any reference the policy forbids."""
    trusted = tuple(trusted_modules)
    try:
        if file_format == "skops":
            return _load_skops(data, trusted)
        if file_format == "pickle":
            return RestrictedUnpickler(io.BytesIO(data), trusted).load()
        if file_format == "joblib":
            return _load_joblib(data, trusted)
        if file_format == "onnx":  # checked, then loaded from bytes (never a path)
            return OnnxModel(data)
    except ModelFileError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OSError,
        ImportError,
    ) as exc:
        raise ModelFileError(
            f"cannot read the {file_format} file ({type(exc).__name__})"
        ) from exc
    raise ModelFileError(f"unsupported file format '{file_format}'")


def _load_joblib(data: bytes, trusted: tuple[str, ...]):
    with _validate_fileobject_and_memmap(io.BytesIO(data), "") as (fobj, _):
        if isinstance(fobj, str):  # joblib < 0.10 files keep arrays in side files
            raise ModelFileError(
                "joblib files older than joblib 0.10 are not supported"
            )
        return RestrictedJoblibUnpickler(fobj, trusted).load()


def _load_skops(data: bytes, trusted: tuple[str, ...]):
    """skops refuses types outside ``trusted``; ours is the server's own policy."""
    import skops.io

    try:
        approved = []
        for type_name in skops.io.get_untrusted_types(data=data):
            module, _, name = type_name.rpartition(".")
            judge(module, name, trusted)  # raises UnsafeModelError naming the type
            approved.append(type_name)
        return skops.io.loads(data, trusted=approved)
    except ModelFileError:
        raise
    except Exception as exc:  # skops raises many kinds; none may escape as a 500
        raise ModelFileError(
            f"cannot read the skops file ({type(exc).__name__})"
        ) from exc
