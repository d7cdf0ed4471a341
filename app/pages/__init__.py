"""Pages blueprint: what every signed-in user sees (predict, results, account)."""

from flask import Blueprint

from app.ui import formatting

bp = Blueprint("pages", __name__)
bp.record_once(lambda state: formatting.install(state.app))

from app.pages import account, predict  # noqa: E402,F401
