"""Cookie sessions for the browser pages only; the JSON API is cookie-less.

API paths authenticate with API keys in headers, never with the session cookie
(app/auth/permissions.py), so opening and saving a signed cookie session there is pure
cost: about 28 µs of a prediction's 330 (``benchmarks/request_path.py``), and a
``Vary: Cookie`` header that keeps shared caches from storing API answers. On API
paths the session is an empty dict that is never saved.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from app.web.paths import API_PREFIXES


class BrowserOnlySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, skipped on API paths."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(API_PREFIXES):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(
        self, app: Flask, session: SecureCookieSession, response: Response
    ) -> None:
        from flask import request

        if request.path.startswith(API_PREFIXES):
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = BrowserOnlySessionInterface()
