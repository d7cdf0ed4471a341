"""A worker's background writer: one daemon thread per process that calls ``flush``
every ``flush_seconds``, so that nothing on the request path waits for the database.

The thread starts on the first use in each process (``started``): gunicorn forks
its workers from a master that may have used the object, and after a fork the
parent's thread is gone. ``close`` stops the thread and flushes what is left; it
runs at a graceful stop or a HUP of the worker (``atexit``). A failing flush is
logged once per outage (not once per second) and retried on the next tick; what
it keeps for the retry is the subclass's business (its ``flush`` puts it back).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

log = logging.getLogger(__name__)


class BackgroundFlush:
    """Subclasses implement ``flush() -> int`` (and may override ``tick``)."""

    thread_name = "flush"

    def __init__(self, flush_seconds: float):
        self.flush_seconds = flush_seconds
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> int:
        raise NotImplementedError

    def tick(self) -> None:
        """One round of the thread; by default a flush."""
        self.flush()

    def describe_failure(self, error: BaseException, at_shutdown: bool) -> str:
        if at_shutdown:
            return f"{self.thread_name}: not written at shutdown: {error}"
        return f"{self.thread_name} flush failed; will retry: {error}"

    def started(self) -> None:
        """Make sure this process's thread runs (cheap when it does)."""
        if self._pid != os.getpid() and self.flush_seconds > 0:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=self.thread_name, daemon=True
            )
            self._thread.start()
            atexit.register(self.close)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.flush_seconds):
            try:
                self.tick()
                failing = False
            except Exception as error:  # keep going if the database blips
                if not failing:
                    log.warning(self.describe_failure(error, at_shutdown=False))
                failing = True

    def close(self) -> int | None:
        """Stop the thread and write what is left; return the rows written, or
        None when that last flush failed (logged)."""
        self._stop.set()
        thread = self._thread
        if (
            thread is not None
            and thread.is_alive()
            and thread is not threading.current_thread()
        ):
            thread.join(timeout=10)
        try:
            return self.flush()
        except Exception as error:
            log.warning(self.describe_failure(error, at_shutdown=True))
            return None
