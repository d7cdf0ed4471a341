"""The protocols page's TensorFlow Serving and MLflow curl sessions and tritonclient
script, run as written against a served demo setup (what `make run` serves), on a
free port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.demo import ensure_demo
from app.extensions import db
from tests.conftest import running_app
from tests.documented import documented
from tests.live_server import serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "protocols.md").read_text()
SCRIPT = ROOT / "examples" / "tritonclient_demo.py"


def section_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, re.S)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    instance = tmp_path_factory.mktemp("instance")
    with running_app("sqlite", tmp_path_factory.mktemp("db")) as app:
        with app.app_context():
            ensure_demo(instance)
            db.session.commit()
        key = json.loads((instance / "demo-credentials.json").read_text())["api_key"]
        with serve(app) as address:
            yield address, key


def test_readme_shows_the_example_script_verbatim():
    assert section_blocks("python") == [SCRIPT.read_text()]


def run_curl_session(block: str, address: str, key: str) -> int:
    """Run each curl line of ``block``; compare its answer with the ``# <JSON>`` line
    under it (else: no error). Return how many answers were compared."""
    lines = block.strip().splitlines()
    checked = 0
    for i, line in enumerate(lines):
        if not line.startswith("curl "):
            continue
        command = line.replace("127.0.0.1:5000", address)
        output = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "MODELDOCK_KEY": key},
        )
        assert output.returncode == 0, (line, output.stderr)
        answer = json.loads(output.stdout)
        if i + 1 < len(lines) and lines[i + 1].startswith("# "):
            assert documented(answer, json.loads(lines[i + 1][2:])), (line, answer)
            checked += 1
        else:
            assert "error" not in answer, line
    return checked


def test_readme_curl_session_answers_as_shown(demo_server):
    address, key = demo_server
    assert run_curl_session(section_blocks("sh")[0], address, key) >= 4


def test_mlflow_curl_session_answers_as_shown(demo_server):
    """The MLflow section: every body format, an error in MLflow's shape, /ping —
    ``/invocations`` answering with the demo setup's only model."""
    address, key = demo_server
    (block,) = [b for b in section_blocks("sh") if "/invocations" in b]
    assert run_curl_session(block, address, key) == 6


def test_tritonclient_script_runs_against_the_server(demo_server):
    address, key = demo_server
    env = {**os.environ, "MODELDOCK_KEY": key, "MODELDOCK_URL": address}
    output = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert output.returncode == 0, output.stderr
    printed = output.stdout.splitlines()
    assert "live: True ready: True" in printed
    assert "id: readme-1" in printed
    assert "labels: ['setosa', 'virginica']" in printed
    assert "probabilities: [[0.98, 0.02, 0.0], [0.0, 0.04, 0.96]]" in printed
    assert "model ready here: True" in printed  # one worker here, and it predicted
