"""Hand-made hostile model files. Each payload, if ever executed, creates a marker
file."""

from __future__ import annotations

import io
import os
import pickle
import subprocess

import joblib
import numpy as np


def global_reduce(module: str, name: str, arg: str) -> bytes:
    """Protocol-0 pickle: GLOBAL module.name, called with one string argument."""
    return (f"c{module}\n{name}\n(S'{arg}'\ntR.").encode()


def stack_global_reduce(module: str, name: str, arg: str) -> bytes:
    """Protocol-4 pickle using STACK_GLOBAL (how modern pickles name globals)."""

    def unicode(text: str) -> bytes:
        raw = text.encode()
        return b"\x8c" + bytes([len(raw)]) + raw

    return (
        b"\x80\x04"
        + unicode(module)
        + unicode(name)
        + b"\x93"
        + unicode(arg)
        + b"\x85R."
    )


class Payload:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_command(marker) -> str:
    return f"touch {marker}"


def pickled(payload, protocol=pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(payload, protocol=protocol)


def joblib_with_object_array(marker, compress=0) -> bytes:
    """A joblib file whose object-dtype array hides a payload in its nested pickle."""
    array = np.empty(2, dtype=object)
    array[0] = 1.0
    array[1] = Payload(os.system, touch_command(marker))
    buffer = io.BytesIO()
    joblib.dump({"coef": array}, buffer, compress=compress)
    return buffer.getvalue()


def joblib_payload(marker, compress=3) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(
        Payload(subprocess.call, ["touch", str(marker)]), buffer, compress=compress
    )
    return buffer.getvalue()


def decompression_bomb() -> bytes:
    """A few MB of zlib that inflates to an 800 MB array."""
    buffer = io.BytesIO()
    joblib.dump(np.zeros(100_000_000), buffer, compress=3)
    return buffer.getvalue()
