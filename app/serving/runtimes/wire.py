"""Messages between a web worker and an inference process: a JSON header and raw
array buffers, never pickles.

A frame is ``<4-byte length><JSON header><8-byte length><buffer>...``; the header
lists each buffer's dtype and shape under ``"arrays"``. Object arrays never cross:
labels of Python objects travel as JSON in the header instead. Reads honour a
deadline, so a process that stops answering mid-frame cannot hold the caller.
"""

from __future__ import annotations

import os
import select
import struct
import time
from typing import Any

import numpy as np
import orjson

MAX_HEADER = 16 * 1024 * 1024
MAX_BUFFER = 2 * 1024 * 1024 * 1024


class Deadline(Exception):
    """The other side did not answer in time."""


class Closed(Exception):
    """The other side closed the pipe (it exited or was killed)."""


def encode(header: dict[str, Any], arrays: list[np.ndarray] = ()) -> bytes:
    """One frame: ``header`` plus ``arrays`` as raw C-ordered buffers."""
    buffers, described = [], []
    for array in arrays:
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise TypeError("object arrays cannot cross the process boundary")
        described.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        buffers.append(array.tobytes())
    head = orjson.dumps({**header, "arrays": described})
    parts = [struct.pack(">I", len(head)), head]
    for buffer in buffers:
        parts += [struct.pack(">Q", len(buffer)), buffer]
    return b"".join(parts)


def write(fd: int, frame: bytes) -> None:
    """Write a whole frame (blocking; the reader drains its pipe)."""
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view) :]


def read(fd: int, deadline: float | None = None) -> tuple[dict[str, Any], list]:
    """Read one frame; raise Deadline past ``deadline`` (monotonic), Closed at EOF."""
    (length,) = struct.unpack(">I", _exactly(fd, 4, deadline))
    if length > MAX_HEADER:
        raise Closed("frame header too large")
    header = orjson.loads(_exactly(fd, length, deadline))
    arrays = []
    for spec in header.pop("arrays", []):
        (size,) = struct.unpack(">Q", _exactly(fd, 8, deadline))
        dtype = np.dtype(spec["dtype"])
        if size > MAX_BUFFER or dtype.hasobject:
            raise Closed("refused buffer")
        data = _exactly(fd, size, deadline)
        arrays.append(np.frombuffer(data, dtype=dtype).reshape(spec["shape"]))
    return header, arrays


def _exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, missing = [], size
    while missing:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            poller = select.poll()  # not select(): worker fds may exceed 1024
            poller.register(fd, select.POLLIN)
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise Deadline()
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise Closed("end of stream")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def labels_out(labels: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Header fields and arrays for predicted labels (JSON for object labels)."""
    labels = np.asarray(labels)
    if labels.dtype.hasobject:
        plain = np.asarray(labels.tolist())
        if plain.dtype.hasobject or plain.shape != labels.shape:
            return {
                "labels_json": orjson.dumps(
                    labels.tolist(), option=orjson.OPT_SERIALIZE_NUMPY
                ).decode()
            }, []
        labels = plain
    return {}, [labels]
