"""Confine the current process before it touches a model file.

Used by the inference processes and by the upload validation sandbox, each
forked by the zygote (``app.registry.zygote``), a clean interpreter with an
environment that holds no secrets.
Layers, each applied where the machine allows it (``confine`` returns the list):

- resource limits: address space (memory), no core files, no file writes
  (``RLIMIT_FSIZE`` 0), few open files;
- started as root: an empty network namespace, then the ``nobody`` user with no
  supplementary groups, so file permissions keep it out of the instance folder
  (only where ``nobody`` can read the Python installation; a Python under a
  private home, as with pyenv in /root, stays root and relies on Landlock, which
  binds root too);
- ``no_new_privs``, then Landlock (Linux ≥ 5.13): read-only access to the Python
  installation, the system libraries, the ``app`` package and its own ``/proc``
  entry, nothing else: no write anywhere, no instance folder, no other process; with
  ABI ≥ 4 no TCP bind or connect; with ABI ≥ 6 no signals to processes outside it
  and no abstract UNIX sockets.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import stat
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NOBODY = 65534
APP_DIR = Path(__file__).resolve().parent.parent
SYSTEM_LIBRARIES = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/dev/urandom",
    "/dev/null",
    # what onnxruntime reads to size its CPU kernels
    "/proc/cpuinfo",
    "/sys/devices/system/cpu",
)


def trusted_paths(trusted_modules: tuple[str, ...]) -> set[str]:
    """Where the top-level packages of ``MODELDOCK_TRUSTED_MODULES`` live (found on
    sys.path without importing them)."""
    found = set()
    for root in {module.split(".")[0] for module in trusted_modules}:
        for entry in sys.path:
            for candidate in (
                Path(entry or ".") / root,
                Path(entry or ".") / f"{root}.py",
            ):
                if candidate.exists():
                    found.add(str(candidate.resolve()))
    return found


def readable_paths(trusted_modules: tuple[str, ...] = ()) -> list[str]:
    """What confined code may read: Python, its packages, system libraries, app/,
    and the packages an admin trusted."""
    paths = {
        sysconfig.get_paths()[key]
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    paths.update(trusted_paths(trusted_modules))
    paths.add(str(APP_DIR))
    paths.update(SYSTEM_LIBRARIES)
    paths.add(f"/proc/{os.getpid()}")  # its own maps (threadpoolctl), not others'
    return sorted(p for p in paths if os.path.exists(p))


def readable_by_others(path: str) -> bool:
    """True when a user without privileges can read ``path`` (every parent too)."""
    current = Path(path).resolve()
    for part in (current, *current.parents):
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH or (part == current and not mode & stat.S_IROTH):
            return False
    return True


def confine(memory_mb: int, trusted_modules: tuple[str, ...] = ()) -> list[str]:
    """Apply every layer this machine supports; return the names of those applied."""
    try:  # imported while the Python installation is still readable
        import py_landlock
    except ImportError:
        py_landlock = None
    applied = []
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    applied.append(f"rlimits (address space {memory_mb} MB, no file writes)")
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            applied.append("empty network namespace")
        if readable_by_others(sysconfig.get_paths()["stdlib"]):
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            applied.append("user nobody")
    applied += _landlock(py_landlock, readable_paths(trusted_modules))
    return applied


def _landlock(py_landlock, paths: list[str]) -> list[str]:
    if py_landlock is None:
        return []
    try:
        abi = int(py_landlock.get_abi_version())
        ruleset = py_landlock.Landlock(strict=False)
        folders = [p for p in paths if os.path.isdir(p)]
        files = [p for p in paths if not os.path.isdir(p)]
        ruleset.allow_read(*folders)  # files take file rights only
        ruleset.add_path_rule(*files, access=py_landlock.AccessFs.READ_FILE)
        ruleset.apply()
    except (OSError, py_landlock.LandlockError) as exc:
        log.warning(
            "Landlock is not available here (%s); the inference process "
            "relies on its user and resource limits only",
            exc,
        )
        return []
    return [f"landlock ABI {abi}"]
