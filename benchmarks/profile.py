"""Where a ModelDock worker spends its time under load: py-spy samples, by part."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:]*):\d+\)$")
# The innermost frame that matches one of these names the part a sample belongs to.
PARTS = (
    (
        "background threads (routing refresh, request-log writer)",
        ("/app/serving/snapshot.py:_watch", "/app/observability/request_log.py:_run"),
    ),
    (
        "rate limiter (flask-limiter, limits, redis client)",
        ("/flask_limiter/", "/limits/", "/redis/", "/app/extensions/ratelimit.py"),
    ),
    ("onnxruntime", ("/onnxruntime/",)),
    ("scikit-learn", ("/sklearn/", "/joblib/", "/scipy/")),
    ("request log (queue put)", ("/app/observability/request_log.py",)),
    (
        "auth: API key lookup, request id",
        ("/app/auth/permissions.py", "/app/auth/credentials.py"),
    ),
    ("input parsing and validation (orjson, numpy)", ("/app/serving/inputs.py",)),
    ("response encoding (orjson)", ("/app/web/finite_json.py",)),
    (
        "routing, prediction, view",
        ("/app/protocols/", "/app/serving/", "/app/rollout/", "/app/registry/"),
    ),
    (
        "other Flask extensions (CORS, CSRF, login, SQLAlchemy teardown)",
        (
            "/flask_cors/",
            "/flask_wtf/",
            "/flask_login/",
            "/flask_sqlalchemy/",
            "/sqlalchemy/",
        ),
    ),
    ("Flask and Werkzeug", ("/flask/", "/werkzeug/")),
    ("gunicorn: HTTP parsing, sockets, keep-alive", ("/gunicorn/",)),
)
WRAPPERS = ("/app/permissions.py:wrapped",)  # the decorator around a whole view


def part_of(stack: str) -> str:
    """The part a sample belongs to: its innermost frame that names one."""
    frames = [FRAME.match(frame.strip()) for frame in stack.split(";")]
    names = [
        "/" + m["file"].lstrip("/") + ":" + m["func"].rsplit(".", 1)[-1]
        for m in frames
        if m
    ]
    for name in reversed(names):
        if any(name.endswith(w) for w in WRAPPERS):
            continue
        for part, needles in PARTS:
            if any(n in name for n in needles):
                return part
    return "other (interpreter, threads)"


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def record(pids: list[int], seconds: int, folder: Path) -> list[subprocess.Popen]:
    """Start one py-spy per worker, sampling only the thread that holds the GIL.

    A gthread worker's other threads wait for the GIL inside whatever frame they
    were in (mostly gunicorn's socket code) and would be counted as busy there;
    ``--gil`` counts where the worker's Python time actually goes. Native code that
    releases the GIL (onnxruntime's run, socket calls) is not in these samples.
    """
    binary = py_spy()
    if binary is None:
        return []
    return [
        subprocess.Popen(
            [
                binary,
                "record",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",
                "--rate",
                "200",
                "-d",
                str(seconds),
                "-p",
                str(pid),
                "-o",
                str(folder / f"spy-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def summarize(folder: Path) -> list[tuple[str, float]]:
    """(part, share of samples) over every worker's recording, largest first."""
    counts: Counter[str] = Counter()
    for path in folder.glob("spy-*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                counts[part_of(stack)] += int(count)
    total = sum(counts.values()) or 1
    return [(part, round(100.0 * n / total, 1)) for part, n in counts.most_common()]
