"""Chunked request bodies (no Content-Length) get the same upload cap as sized ones.

Werkzeug stops reading a chunked body at ``MAX_CONTENT_LENGTH`` without saying so:
the truncated JSON then looked malformed (400) instead of too large (413). This
middleware reads such a body first, spooled to disk past 1 MB: when it fits, the app
sees it with its Content-Length; when it does not, the app sees a Content-Length one
byte over the cap, so the usual 413 follows wherever the body is read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

from werkzeug.wsgi import ClosingIterator

SPOOL_BYTES = 1024 * 1024
CHUNK = 64 * 1024


class ChunkedBodyLimit:
    """WSGI middleware: buffer chunked bodies up to the app's ``MAX_CONTENT_LENGTH``."""

    def __init__(self, wsgi_app: Any, config: Mapping[str, Any]) -> None:
        self.wsgi_app = wsgi_app
        self.config = config

    def __call__(self, environ: dict, start_response: Any):
        cap = self.config.get("MAX_CONTENT_LENGTH")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if cap is None or not chunked or environ.get("CONTENT_LENGTH"):
            return self.wsgi_app(environ, start_response)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        size, source = 0, environ["wsgi.input"]
        while size <= cap:
            data = source.read(min(CHUNK, cap + 1 - size))
            if not data:
                break
            spool.write(data)
            size += len(data)
        if size > cap:  # the rest is never read; the server drops it
            spool.close()
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        spool.seek(0)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(size)
        del environ["HTTP_TRANSFER_ENCODING"]  # Werkzeug ignores the length otherwise
        return ClosingIterator(self.wsgi_app(environ, start_response), spool.close)
