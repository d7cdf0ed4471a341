"""Models run in confined inference processes, supervised by the web worker.

Each loaded version gets its own small pool of processes
(``app.serving.runtimes.worker``), forked by the web worker's zygote
(``app.registry.zygote``: a clean interpreter whose environment holds no secrets),
confined before they read the model (``confine``). Rows go in
and answers come out as raw array buffers (``wire``). Every call has a deadline:
a process that overruns it, dies or answers nonsense is killed, only that request
fails (504 ``prediction_timeout`` / 502 ``runtime_failed``), and a fresh process
takes over in the background. The web worker never unpickles the model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np
import orjson

from app.registry import zygote
from app.registry.errors import ModelFileError
from app.serving.runtimes import wire
from app.serving.runtimes.base import (
    Explained,
    NotExplainable,
    PredictionFailed,
    PredictionTimeout,
    Runtime,
    RuntimeFailed,
)

log = logging.getLogger(__name__)

LOAD_TIMEOUT_SECONDS = 60.0


def _environment(memory_mb: int, trusted_modules: tuple[str, ...]) -> dict[str, str]:
    """The whole environment of an inference process: no secret, no service URL."""
    return {
        **zygote.base_environment(),
        "MODELDOCK_RUNTIME_MEMORY_MB": str(memory_mb),
        "MODELDOCK_RUNTIME_TRUSTED": ",".join(trusted_modules),
    }


class InferenceProcess:
    """One confined process holding one model; used by one caller at a time."""

    def __init__(self, load_frame: bytes, environment: dict[str, str], label: str):
        self.load_frame = load_frame
        self.environment = environment
        self.label = label
        self.proc: zygote.Child | None = None
        self.confinement: list[str] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, deadline: float) -> None:
        """Start the process and load the model; raise if it cannot."""
        self.kill()
        try:
            self.proc = zygote.spawn("worker", self.environment)
            wire.write(self.proc.stdin.fileno(), self.load_frame)
            header, _ = wire.read(self.proc.stdout.fileno(), deadline)
        except (wire.Deadline, wire.Closed, OSError) as exc:
            self.kill()
            raise ModelFileError(
                f"the inference process for {self.label} did not start",
                code="runtime_failed",
            ) from exc
        if not header.get("ok"):
            self.kill()
            log.error(
                "inference process for %s could not load the model: %s",
                self.label,
                header.get("detail"),
            )
            raise ModelFileError(
                f"the inference process could not load {self.label}",
                code="runtime_failed",
            )
        self.confinement = header.get("confinement", [])

    def _exchange(self, op: str, rows: np.ndarray, deadline: float):
        """Send rows for ``op``, wait for the answer until ``deadline``."""
        try:
            wire.write(self.proc.stdin.fileno(), wire.encode({"op": op}, [rows]))
            header, arrays = wire.read(self.proc.stdout.fileno(), deadline)
        except wire.Deadline:
            log.warning(
                "inference process %d for %s passed its deadline; killed",
                self.proc.pid,
                self.label,
            )
            self.kill()
            raise PredictionTimeout() from None
        except (wire.Closed, OSError, ValueError, orjson.JSONDecodeError):
            status = self.kill()
            log.error(
                "inference process for %s failed (exit status %s)", self.label, status
            )
            raise RuntimeFailed() from None
        if header.get("error") == "not_explainable":
            raise NotExplainable(str(header.get("estimator", "model")))
        if not header.get("ok"):
            log.warning(
                "model %s could not %s %d rows: %s",
                self.label,
                op,
                len(rows),
                header.get("detail"),
            )
            if header.get("error") == "out_of_memory":
                self.kill()  # a process that ran out of memory starts afresh
            raise PredictionFailed()
        return header, arrays

    def predict(self, rows: np.ndarray, deadline: float):
        """Labels and probabilities (or None) for ``rows``."""
        header, arrays = self._exchange("predict", rows, deadline)
        if "labels_json" in header:
            labels = np.asarray(orjson.loads(header["labels_json"]))
        else:
            labels = arrays.pop(0)
        probabilities = arrays[0] if header.get("proba") else None
        if len(labels) != len(rows) or (
            probabilities is not None and len(probabilities) != len(rows)
        ):
            self.kill()
            raise RuntimeFailed()
        return labels, probabilities

    def explain(self, rows: np.ndarray, deadline: float) -> Explained:
        """Per-feature contributions for ``rows`` (``explainer``, in the process)."""
        header, arrays = self._exchange("explain", rows, deadline)
        try:
            base, output, contributions = arrays
            explained = Explained(
                base=base,
                output=output,
                contributions=contributions,
                features=[str(f) for f in header["features"]],
                outputs=list(header["outputs"]),
                explained=str(header["explained"]),
                method=str(header["method"]),
                mapped=bool(header["mapped"]),
            )
        except (KeyError, TypeError, ValueError):
            explained = None
        if explained is None or not explained.consistent(len(rows)):
            self.kill()
            raise RuntimeFailed()
        return explained

    def kill(self) -> int | None:
        """Stop the process (SIGKILL) and reap it; return its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        return proc.wait()


class IsolatedRuntime(Runtime):
    """A version served by a pool of confined inference processes."""

    kind = "isolated"
    batchable = True

    def __init__(
        self,
        sha256: str,
        data: bytes,
        file_format: str,
        schema: dict[str, Any],
        *,
        trusted_modules: tuple[str, ...] = (),
        memory_mb: int = 2048,
        processes: int = 1,
    ):
        # The worker keeps the bytes to start a replacement without the database.
        super().__init__(sha256, schema, footprint=2 * len(data))
        load = wire.encode(
            {"op": "load", "format": file_format, "schema": schema},
            [np.frombuffer(data, dtype=np.uint8)],
        )
        label = f"{schema.get('estimator', 'model')} {sha256[:12]}"
        environment = _environment(memory_mb, tuple(trusted_modules))
        self._all = [
            InferenceProcess(load, environment, label) for _ in range(max(1, processes))
        ]
        self._idle: queue.LifoQueue[InferenceProcess] = queue.LifoQueue()
        self._closed = False
        self._all[0].start(
            time.monotonic() + LOAD_TIMEOUT_SECONDS
        )  # fail here, not later
        for process in self._all:
            self._idle.put(process)

    def predict(self, rows: np.ndarray, deadline: float | None = None):
        return self._call(InferenceProcess.predict, rows, deadline)

    def explain(self, rows: np.ndarray, deadline: float | None = None) -> Explained:
        return self._call(InferenceProcess.explain, rows, deadline)

    def _call(self, method, rows: np.ndarray, deadline: float | None):
        """``method`` on an idle process, restarting it if it fails."""
        if deadline is None:
            deadline = time.monotonic() + LOAD_TIMEOUT_SECONDS
        try:
            process = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise PredictionTimeout() from None
        failed = False
        try:
            if not process.alive:
                process.start(max(deadline, time.monotonic() + LOAD_TIMEOUT_SECONDS))
            rows = np.ascontiguousarray(rows, dtype=np.float64)
            return method(process, rows, deadline)
        except ModelFileError:
            failed = True
            raise RuntimeFailed() from None
        except (PredictionTimeout, RuntimeFailed):
            failed = True
            raise
        finally:
            if failed:  # a replacement starts now, off the request path
                threading.Thread(
                    target=self._replace,
                    args=(process,),
                    name="inference-restart",
                    daemon=True,
                ).start()
            else:
                self._idle.put(process)

    def _replace(self, process: InferenceProcess) -> None:
        try:
            process.start(time.monotonic() + LOAD_TIMEOUT_SECONDS)
        except Exception:
            log.exception(
                "could not restart the inference process for %s", process.label
            )
        if self._closed:  # closed while this one started: nobody else will stop it
            process.kill()
        self._idle.put(process)

    def describe(self) -> dict[str, Any]:
        confinement = next((p.confinement for p in self._all if p.confinement), [])
        return {
            **super().describe(),
            "processes": len(self._all),
            "confinement": confinement,
        }

    def close(self) -> None:
        self._closed = True
        for process in self._all:
            process.kill()
