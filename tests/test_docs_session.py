"""The documented session, followed top to bottom as a new user would: every shell
block of the README's tour and of docs/api.md runs in order, one command at a time,
against a fresh demo server (what `make run` serves), and every answer the pages show
is checked. A command with no documented answer must not answer an error."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from app.cli.demo import ensure_demo
from app.extensions import db
from tests.conftest import running_app
from tests.documented import documented
from tests.live_server import serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "api.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def steps(page: Path) -> list[tuple[str, object | None]]:
    """(command, documented answer or None) for every command of ``page``'s shell
    blocks; an answer is a ```json block that directly follows the shell block (for
    its last command) or a ``# {...}`` line right after a command."""
    found: list[tuple[str, object | None]] = []
    text = page.read_text()
    blocks = list(FENCE.finditer(text))
    for block, after in zip(blocks, [*blocks[1:], None], strict=True):
        if block.group(1) != "sh":
            continue
        commands = _commands(block.group(2))
        found.extend(commands)
        if (
            after is not None
            and after.group(1) == "json"
            and commands
            and not text[block.end() : after.start()].strip()
        ):
            found[-1] = (found[-1][0], json.loads(after.group(2)))
    return found


def _commands(body: str) -> list[tuple[str, object | None]]:
    commands: list[tuple[str, object | None]] = []
    for line in body.replace("\\\n", " ").splitlines():
        if line.startswith("# {") and commands:
            commands[-1] = (commands[-1][0], json.loads(line[2:]))
        elif line.strip() and not line.startswith("#"):
            commands.append((line, None))
    return commands


def json_documents(text: str) -> list:
    decoder, documents, text = json.JSONDecoder(), [], text.strip()
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            break
        documents.append(value)
        text = text[end:].strip()
    return documents


@pytest.fixture(scope="module")
def session_folder(tmp_path_factory):
    """A fresh demo server and a folder laid out like the repository for the user's
    commands (instance/ with the demo credentials, .venv, wsgi.py)."""
    folder = tmp_path_factory.mktemp("session")
    with running_app("sqlite", tmp_path_factory.mktemp("db")) as app:
        with app.app_context():
            ensure_demo(folder / "instance")
            db.session.commit()
        (folder / ".venv").symlink_to(ROOT / ".venv")
        (folder / "wsgi.py").symlink_to(ROOT / "wsgi.py")
        env = {
            **os.environ,
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": app.config["SECRET_KEY"],
        }
        with serve(app) as address:
            yield folder, address, env


def test_documented_session_runs_in_order_with_the_answers_shown(session_folder):
    folder, address, env = session_folder
    state = folder / "exports.sh"
    state.write_text("")
    checked = ran = 0
    for page in PAGES:
        for command, shown in steps(page):
            script = (
                f"source {shlex.quote(str(state))}\n"
                f"{command.replace('127.0.0.1:5000', address)}\n"
                f"export -p > {shlex.quote(str(state))}"
            )
            output = subprocess.run(
                ["bash", "-c", script],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=folder,
                env=env,
            )
            ran += 1
            assert output.returncode == 0, (page.name, command, output.stderr[-2000:])
            answers = json_documents(output.stdout)
            if shown is not None:
                assert answers and documented(answers[-1], shown), (
                    page.name,
                    command,
                    output.stdout[:2000],
                )
                checked += 1
            else:
                errors = [a for a in answers if isinstance(a, dict) and "error" in a]
                assert not errors, (page.name, command, errors)
    assert ran >= 30 and checked >= 4, (ran, checked)
