"""The zygote that forks the confined processes (app/registry/zygote.py): children
hold no secret of the server, die with it, report how they ended, and a zygote
that was killed is replaced on the next request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.registry import zygote


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def worker(**extra) -> zygote.Child:
    return zygote.spawn(
        "worker",
        {
            "MODELDOCK_RUNTIME_MEMORY_MB": "1024",
            "MODELDOCK_RUNTIME_TRUSTED": "",
            **extra,
        },
    )


def stop(child: zygote.Child) -> int:
    """Kill ``child`` and close its pipes; return its exit status."""
    child.kill()
    status = child.wait(10)
    child.stdin.close()
    child.stdout.close()
    return status


@pytest.fixture
def secret_in_environment(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "zygote-test-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:zygote-pw@db/prod")
    zygote._close()  # the next spawn starts a zygote from this environment
    zygote._zygote = None


def test_children_and_the_zygote_hold_none_of_the_servers_secrets(
    secret_in_environment,
):
    child = worker()
    try:
        parent = zygote._zygote.proc.pid
        for pid in (parent, child.pid):
            text = environ_of(pid)
            assert "zygote-test-secret" not in text and "zygote-pw" not in text
            assert "SECRET_KEY" not in text and "DATABASE_URL" not in text
        # A fork copies only the forking thread: the zygote must have no other.
        assert threads_of(parent) == 1
    finally:
        assert stop(child) == -signal.SIGKILL


def test_an_inference_child_reports_its_confinement_and_exit_status():
    child = worker()
    child.stdin.close()  # end of input before the load frame: a clean exit
    assert child.wait(30) == 0
    child.stdout.close()

    child = worker(MODELDOCK_RUNTIME_MEMORY_MB="not a number")
    assert child.wait(30) == 1  # its main() failed: the status says so
    child.stdin.close()
    child.stdout.close()


def test_a_killed_zygote_takes_its_children_and_is_replaced():
    child = worker()
    first = zygote._zygote.proc.pid
    os.kill(first, signal.SIGKILL)
    assert stop(child) == -signal.SIGKILL  # PR_SET_PDEATHSIG
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child.pid}").exists()
    again = worker()
    try:
        assert zygote._zygote.proc.pid != first
        assert again.poll() is None
    finally:
        stop(again)


def test_spawns_from_threads_that_end_leave_the_zygote_and_children_running():
    """A web worker starts its zygote from whichever request thread needs it first;
    neither the zygote nor its children may die when that thread ends."""
    zygote._close()
    zygote._zygote = None
    children: list[zygote.Child] = []
    lock = threading.Lock()

    def spawn():
        child = worker()
        with lock:
            children.append(child)

    threads = [threading.Thread(target=spawn) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parent = zygote._zygote.proc.pid
    try:
        assert len({child.pid for child in children}) == 6
        time.sleep(1)
        assert [child.poll() for child in children] == [None] * 6
        assert zygote._zygote.proc.pid == parent and zygote._zygote.alive
    finally:
        for child in children:
            assert stop(child) == -signal.SIGKILL


def test_the_zygote_and_its_children_end_with_the_process_that_started_them():
    script = (
        "import os, sys\n"
        "from app.registry import zygote\n"
        "child = zygote.spawn('worker', {'MODELDOCK_RUNTIME_MEMORY_MB': '1024',"
        " 'MODELDOCK_RUNTIME_TRUSTED': ''})\n"
        "print(zygote._zygote.proc.pid, child.pid, flush=True)\n"
        "os._exit(0)\n"  # as a SIGKILLed web worker: no atexit, no close
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    pids = [int(pid) for pid in output.split()]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]


def alive(pid: int) -> bool:
    """Running (not a zombie waiting for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_waiting_past_a_timeout_raises_and_a_kill_is_reported():
    child = worker()  # waits for its load frame: its stdin stays open
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.5)
    assert child.poll() is None
    assert stop(child) == -signal.SIGKILL
