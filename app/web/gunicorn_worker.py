"""gunicorn's threaded worker, leaving its own listening socket as soon as it stops.

With ``reuse_port`` (gunicorn.conf.py) every worker listens on a socket of its own
and the kernel spreads new connections evenly over them, so keep-alive clients keep
every worker busy (with one shared socket, one worker accepted every connection of a
32-connection client while the other idled). A stopping worker must leave that group
at once: otherwise the kernel keeps queueing connections on a socket nobody will
accept from, and resets them when the worker finally exits.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class ReusePortThreadWorker(ThreadWorker):
    """``gthread`` that closes its listeners when it stops accepting for good."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive and self.cfg.reuse_port:
            for listener in self.sockets:
                listener.close()
