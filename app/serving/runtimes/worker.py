"""An inference process: this module's ``main``, forked for a web worker by its
zygote (``app.registry.zygote``).

It confines itself before reading a byte of the model (``confine``), then answers
frames on its stdin/stdout (``wire``): first ``load`` (the model's bytes), then any
number of ``predict`` or ``explain`` (``explainer``). Whatever model code prints
goes to stderr, never into the protocol. It exits when its parent goes away.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time


def _exit_with_parent(parent: int) -> None:
    """End this process when the web worker that started it is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main() -> int:
    """Serve one model until the parent closes the pipe."""
    parent = os.getppid()
    proto_in, proto_out = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # model code that prints must not corrupt the protocol
    from app.registry.confine import confine

    trusted = tuple(m for m in os.environ["MODELDOCK_RUNTIME_TRUSTED"].split(",") if m)
    layers = confine(int(os.environ["MODELDOCK_RUNTIME_MEMORY_MB"]), trusted)
    # Imported after confinement: threads these libraries start are confined too.
    from app.serving.runtimes import wire
    from app.serving.runtimes.predictor import Predictor

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    log = logging.getLogger("modeldock.inference")
    try:
        header, arrays = wire.read(proto_in)
        predictor = Predictor(
            arrays[0].tobytes(), header["format"], header["schema"], trusted
        )
    except wire.Closed:
        return 0
    except Exception as exc:  # the detail is the server's, not the client's
        wire.write(
            proto_out,
            wire.encode({"ok": False, "error": "load_failed", "detail": _detail(exc)}),
        )
        return 1
    wire.write(
        proto_out, wire.encode({"ok": True, "pid": os.getpid(), "confinement": layers})
    )
    while True:
        try:
            request, (rows,) = wire.read(proto_in)
        except wire.Closed:
            return 0
        try:
            if request.get("op") == "explain":
                frame = _explain(predictor, rows)
            else:
                labels, probabilities = predictor.predict(rows)
                head, arrays = wire.labels_out(labels)
                if probabilities is not None:
                    arrays.append(np_float(probabilities))
                frame = wire.encode(
                    {"ok": True, **head, "proba": probabilities is not None}, arrays
                )
        except MemoryError:
            log.error("inference process %d: out of memory", os.getpid())
            frame = wire.encode(
                {"ok": False, "error": "out_of_memory", "detail": "MemoryError"}
            )
        except Exception as exc:
            frame = wire.encode(
                {"ok": False, "error": "prediction_failed", "detail": _detail(exc)}
            )
        wire.write(proto_out, frame)


def _explain(predictor, rows) -> bytes:
    """Contributions per feature (``explainer``), or a refusal naming the model."""
    from app.serving.runtimes import explainer, wire

    try:
        result = predictor.explain(rows)
    except explainer.NotExplainable as refusal:
        return wire.encode(
            {"ok": False, "error": "not_explainable", "estimator": refusal.estimator}
        )
    return wire.encode(
        {"ok": True, **result.header()},
        [result.base, result.output, result.contributions],
    )


def np_float(values):
    """Probabilities as a float64 array (whatever the model returned)."""
    import numpy as np

    return np.asarray(values, dtype=np.float64)


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


if __name__ == "__main__":
    sys.exit(main())
