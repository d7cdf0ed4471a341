"""Validate an uploaded model file in a separate, resource-limited process.

The parent has its zygote fork this module's ``main`` (``app.registry.zygote``) with
the file on stdin and
settings in the environment (no secrets); this process confines itself like an
inference process (``app.registry.confine``: limits, unprivileged user, Landlock)
and limits its CPU time before reading a byte, loads the file through the
restricted loaders, checks the estimator's state (``inspection``), derives the
schema, predicts a sample and extreme rows (so that branches reachable only at
extremes run here first), and prints one JSON line on stdout. Then, for
scikit-learn models, it converts the estimator to ONNX, verifies and times it
(``onnx_compile``) and prints a second line: if that step dies on a limit, the
model is still accepted, served by scikit-learn, with the reason recorded.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
from typing import Any

from app.registry import zygote
from app.registry.errors import ModelFileError

EXIT_REFUSED = 3


def validate_in_subprocess(
    data: bytes,
    file_format: str,
    *,
    trusted_modules: list[str],
    sample_rows: list | None,
    memory_mb: int,
    cpu_seconds: int,
    timeout_seconds: int,
) -> dict[str, Any]:
    """Run the validator on ``data``; return its report or raise ModelFileError."""
    env = {
        "MODELDOCK_SANDBOX_FORMAT": file_format,
        "MODELDOCK_SANDBOX_TRUSTED": ",".join(trusted_modules),
        "MODELDOCK_SANDBOX_SAMPLE": json.dumps(sample_rows),
        "MODELDOCK_SANDBOX_MEMORY_MB": str(memory_mb),
        "MODELDOCK_SANDBOX_CPU_SECONDS": str(cpu_seconds),
    }
    try:
        stdout, status = zygote.run("sandbox", env, data, timeout_seconds)
    except subprocess.TimeoutExpired as exc:
        report, runtime = _parse_report(exc.stdout or b"")
        if report is None or not report.get("ok"):
            raise ModelFileError(
                f"validating the model took longer than {timeout_seconds} s; refused",
                code="model_validation_failed",
            ) from exc
        report["runtime"] = runtime or _not_compiled(
            f"the ONNX conversion did not finish within {timeout_seconds} s"
        )
        return report
    report, runtime = _parse_report(stdout)
    if report is None:
        raise ModelFileError(
            "the model could not be validated: the validation process was stopped "
            f"(exit status {status}); it may exceed the memory limit "
            f"({memory_mb} MB) or the CPU limit ({cpu_seconds} s)",
            code="model_validation_failed",
        )
    if not report.get("ok"):
        raise ModelFileError(
            report["message"], report.get("field") or "file", report.get("code")
        )
    report["runtime"] = runtime or _not_compiled(
        "the ONNX conversion was stopped (exit status "
        f"{status}); it may exceed the memory limit ({memory_mb} MB) or "
        f"the CPU limit ({cpu_seconds} s)"
    )
    return report


def _not_compiled(reason: str) -> dict[str, Any]:
    return {
        "verdict": "not_convertible",
        "onnx": None,
        "speedup": None,
        "reason": reason,
        "report": None,
    }


def _parse_report(stdout: bytes) -> tuple[dict | None, dict | None]:
    """The validation line and, when the process got that far, the runtime line."""
    report = runtime = None
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "ok" in value and report is None:
            report = value
        elif isinstance(value, dict) and "verdict" in value and report is not None:
            runtime = value
            if runtime.get("onnx") is not None:
                runtime["onnx"] = base64.b64decode(runtime["onnx"])
    return report, runtime


def _limit_resources() -> None:
    from app.registry.confine import confine

    cpu = int(os.environ["MODELDOCK_SANDBOX_CPU_SECONDS"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    trusted = tuple(m for m in os.environ["MODELDOCK_SANDBOX_TRUSTED"].split(",") if m)
    confine(int(os.environ["MODELDOCK_SANDBOX_MEMORY_MB"]), trusted)


def main() -> int:
    """Entry point of the validation process."""
    _limit_resources()
    from app.registry.inspection import inspect_estimator
    from app.registry.loading import load_bytes
    from app.registry.schema import derive_schema, predict_extremes, smoke_sample

    data = sys.stdin.buffer.read()
    file_format = os.environ["MODELDOCK_SANDBOX_FORMAT"]
    trusted = [m for m in os.environ["MODELDOCK_SANDBOX_TRUSTED"].split(",") if m]
    sample_rows = json.loads(os.environ["MODELDOCK_SANDBOX_SAMPLE"])
    # Whatever the model prints must not corrupt the report line.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    estimator = None
    try:
        estimator = load_bytes(data, file_format, trusted)
        if file_format != "onnx":
            inspect_estimator(estimator)
        schema = estimator.schema if file_format == "onnx" else derive_schema(estimator)
        sample = smoke_sample(estimator, schema, sample_rows)
        if file_format != "onnx":  # uploaded graphs always run isolated
            predict_extremes(estimator, schema, sample["rows"])
        report = {"ok": True, "schema": schema, "sample": sample}
        status = 0
    except ModelFileError as exc:
        report = {
            "ok": False,
            "code": exc.code,
            "message": exc.message,
            "field": exc.field,
        }
        status = EXIT_REFUSED
    except MemoryError:
        report = {
            "ok": False,
            "code": "model_validation_failed",
            "message": "the model needs more memory than the validation limit",
        }
        status = EXIT_REFUSED
    except Exception as exc:  # model code failed: our words to the client
        print(f"validation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        report = {
            "ok": False,
            "code": "invalid_model_file",
            "message": f"the model could not be validated ({type(exc).__name__})",
        }
        status = EXIT_REFUSED
    real_stdout.write(json.dumps(report) + "\n")
    real_stdout.flush()
    if status == 0:
        real_stdout.write(
            json.dumps(_runtime_line(estimator, file_format, report)) + "\n"
        )
        real_stdout.flush()
    return status


def _runtime_line(estimator, file_format: str, report: dict[str, Any]) -> dict:
    """Convert, verify and time the ONNX variant; never fails the upload."""
    if file_format == "onnx":
        return {
            "verdict": "native",
            "onnx": None,
            "speedup": None,
            "reason": "uploaded as ONNX; served by onnxruntime",
            "report": None,
        }
    from app.registry.onnx_compile import compile_onnx

    try:
        result = compile_onnx(estimator, report["schema"], report["sample"]["rows"])
    except MemoryError:
        result = _not_compiled(
            "the ONNX conversion needs more memory than the validation limit"
        )
    except Exception as exc:  # the model is valid; only its fast path is not
        result = _not_compiled(f"the ONNX conversion failed ({type(exc).__name__})")
    if result["onnx"] is not None:
        result["onnx"] = base64.b64encode(result["onnx"]).decode("ascii")
    return result


if __name__ == "__main__":
    sys.exit(main())
