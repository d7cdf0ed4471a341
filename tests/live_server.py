"""A real WSGI server (werkzeug) on 127.0.0.1 and a free port, in a thread, for clients
that speak HTTP themselves (tritonclient, curl, Chromium)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server


def static_in_memory(app):
    """werkzeug's server leaves a static file open when the browser drops the
    connection mid-answer (Chromium does, for the favicon): static answers are read
    whole first, so no file is left for the garbage collector to find later."""

    def wrapped(environ, start_response):
        iterable = app(environ, start_response)
        if not environ.get("PATH_INFO", "").startswith("/static/"):
            return iterable
        try:
            return [b"".join(iterable)]
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    return wrapped


@contextmanager
def serve(app):
    """Yield ``"127.0.0.1:<port>"`` while ``app`` is served; always shut down after."""
    server = make_server("127.0.0.1", 0, static_in_memory(app), threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        name="live-server",
        kwargs={"poll_interval": 0.1},
        daemon=True,
    )
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
