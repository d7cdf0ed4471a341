"""A clean, pre-imported process that forks the confined processes.

Upload validation (``app.registry.sandbox``) and inference processes
(``app.serving.runtimes.worker``) used to start as new interpreters: about two seconds
of imports (scikit-learn, skops, skl2onnx, the app's loaders) before a byte of the
model was read, per upload and per inference process. The zygote pays that once: it
is itself started as a new interpreter with an environment that holds no secret (no
database URL, no secret key; the same variables the confined processes had), imports
those libraries, and then only forks. Each child applies the process's confinement
(``app.registry.confine``: limits, network namespace, unprivileged user, Landlock)
before it reads the model, exactly as a new interpreter did, so the zygote changes
the start time, not the walls. What a child inherits from the zygote is libraries'
code and nothing a model could use: the zygote never reads a model file, never
talks to the database and holds no request data.

The web worker talks to its zygote over a socket pair made when it starts it; no
other process can reach it (no path, no abstract name), so a confined child cannot
ask for siblings. A request passes the child's stdin and stdout (and a status
socket) as file descriptors; the zygote forks, answers the pid, and writes the
child's exit status on the status socket when it reaps it. Children are killed
with the zygote (``PR_SET_PDEATHSIG``: the zygote forks from its only thread), and
the zygote ends when its web worker is gone (the socket pair reads end of file;
not the parent-death signal, which fires when the *thread* that started the zygote
ends, and a web worker starts it from whichever request thread needs it first).

``spawn(kind, env)`` is what callers use: it returns a ``Child`` with the parts of
``subprocess.Popen`` they need (``pid``, ``stdin``, ``stdout``, ``poll``, ``wait``,
``kill``, ``returncode``), from the zygote of this process, started (or restarted
after it died) on first use.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import IO

# What a child runs: a fixed set, so that a request can only choose between them.
KINDS = {
    "sandbox": "app.registry.sandbox",
    "worker": "app.serving.runtimes.worker",
}
# Imported by the zygote before it forks (none may start a thread: a fork copies
# only the forking thread, and a lock held by another one would never be released
# in the child; onnxruntime starts one when imported, so the children import it).
PRELOAD = (
    "numpy",
    "scipy.special",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.tree",
    "skops.io",
    "joblib",
    "skl2onnx",
    "app.registry.sandbox",
    "app.registry.inspection",
    "app.registry.loading",
    "app.registry.schema",
    "app.registry.onnx_compile",
    "app.serving.runtimes.worker",
    "app.serving.runtimes.wire",
    "app.serving.runtimes.predictor",
)
PR_SET_PDEATHSIG = 1
STATUS = struct.Struct("!i")
MESSAGE_BYTES = 1 << 16


def base_environment() -> dict[str, str]:
    """The zygote's own environment, which every child starts from: no secret."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        # One thread each: BLAS thread pools reserve memory the limits would count,
        # and a fork would not copy them.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JOBLIB_MULTIPROCESSING": "0",
    }


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --- the web worker's side


class Child:
    """A process the zygote forked: the parts of ``subprocess.Popen`` callers use."""

    def __init__(
        self, kind: str, pid: int, stdin: IO[bytes], stdout: IO[bytes], status
    ):
        self.kind = kind
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self._status = status
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._status.setblocking(False)
            try:
                self._read_status()
            except BlockingIOError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._status.setblocking(True)
            self._status.settimeout(timeout)
            try:
                self._read_status()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.kind, timeout) from None
        return self.returncode

    def _read_status(self) -> None:
        data = self._status.recv(STATUS.size)
        # An empty read: the zygote died, and its children with it.
        self.returncode = STATUS.unpack(data)[0] if data else -signal.SIGKILL
        self._status.close()

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Zygote:
    """The web worker's handle on its zygote process."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.registry.zygote", str(theirs.fileno())],
            env=base_environment(),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # children get their own; stderr is shared
            pass_fds=(theirs.fileno(),),
            close_fds=True,
        )
        theirs.close()
        self.owner = os.getpid()
        self.lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def spawn(self, kind: str, env: dict[str, str], cwd: str = "/") -> Child:
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        status_ours, status_theirs = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_STREAM
        )
        request = json.dumps({"kind": kind, "env": env, "cwd": cwd}).encode()
        try:
            with self.lock:
                socket.send_fds(
                    self.control,
                    [request],
                    [stdin_r, stdout_w, status_theirs.fileno()],
                )
                answer = self.control.recv(MESSAGE_BYTES)
        except OSError:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            status_ours.close()
            raise
        finally:
            for fd in (stdin_r, stdout_w):
                os.close(fd)
            status_theirs.close()
        reply = json.loads(answer) if answer else {"error": "the zygote is gone"}
        if "pid" not in reply:
            os.close(stdin_w)
            os.close(stdout_r)
            status_ours.close()
            raise OSError(f"the zygote could not fork: {reply.get('error')}")
        return Child(
            kind,
            reply["pid"],
            os.fdopen(stdin_w, "wb", buffering=0),
            os.fdopen(stdout_r, "rb", buffering=0),
            status_ours,
        )

    def close(self) -> None:
        self.control.close()  # the zygote exits at end of file; its children too
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


@atexit.register
def _close() -> None:
    if _zygote is not None and _zygote.owner == os.getpid():
        _zygote.close()


def spawn(kind: str, env: dict[str, str], cwd: str = "/") -> Child:
    """A confined process of ``kind`` with ``env`` (added to the base environment),
    forked by this process's zygote (started, or restarted, when needed)."""
    if kind not in KINDS:
        raise ValueError(kind)
    for attempt in (1, 2):
        zygote = _current(replace=attempt == 2)
        try:
            return zygote.spawn(kind, {**base_environment(), **env}, cwd)
        except OSError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _current(replace: bool) -> Zygote:
    """This process's zygote; a new one if it is gone (or ``replace``)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or replace or not _zygote.alive:
            if _zygote is not None and _zygote.owner == os.getpid():
                _zygote.close()
            _zygote = Zygote()
        return _zygote


def run(kind: str, env: dict[str, str], data: bytes, timeout: float):
    """As ``subprocess.run(input=data, capture_output=True, timeout=timeout)`` for a
    child of ``kind``: return (its stdout, its exit status). Past ``timeout`` the
    child is killed and ``subprocess.TimeoutExpired`` carries what it had written."""
    child = spawn(kind, env)

    def feed() -> None:
        try:
            child.stdin.write(data)
        except OSError:
            pass  # it stopped reading: its exit status says why
        finally:
            child.stdin.close()

    writer = threading.Thread(target=feed, name=f"{kind}-input", daemon=True)
    writer.start()
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    fd = child.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise subprocess.TimeoutExpired(kind, timeout)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        status = child.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise subprocess.TimeoutExpired(
            kind, timeout, output=b"".join(chunks)
        ) from None
    finally:
        child.stdout.close()
        writer.join()
    return b"".join(chunks), status


# --- the zygote's side


def _child(control: socket.socket, request: dict, fds: list[int], sel) -> None:
    """In the forked child: become a fresh process of ``kind``; never returns."""
    code = 1
    try:
        _die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sel.close()
        control.close()
        stdin_r, stdout_w, status = fds
        os.close(status)
        os.dup2(stdin_r, 0)
        os.dup2(stdout_w, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        module = __import__(KINDS[request["kind"]], fromlist=["main"])
        sys.argv = [module.__file__]
        code = module.main() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(control: socket.socket) -> None:
    """Fork on request until the web worker closes the socket pair."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(wake_r, selectors.EVENT_READ, "reap")
    children: dict[int, int] = {}  # pid → its status socket
    while True:
        for key, _ in sel.select():
            if key.data == "reap":
                os.read(wake_r, 4096)
            else:
                message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 3)
                if not message:
                    return
                try:
                    request = json.loads(message)
                    if request["kind"] not in KINDS or len(fds) != 3:
                        raise ValueError("bad request")
                    pid = os.fork()
                except (OSError, ValueError, KeyError) as exc:
                    for fd in fds:
                        os.close(fd)
                    control.send(json.dumps({"error": str(exc)}).encode())
                    continue
                if pid == 0:
                    _child(control, request, fds, sel)
                os.close(fds[0])
                os.close(fds[1])
                children[pid] = fds[2]
                control.send(json.dumps({"pid": pid}).encode())
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            status_fd = children.pop(pid, None)
            if status_fd is not None:
                try:
                    os.write(status_fd, STATUS.pack(os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass  # the web worker no longer waits for it
                os.close(status_fd)


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        __import__(name)
    serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
