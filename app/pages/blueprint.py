"""The pages blueprint: what every signed-in user sees (predict, results, account)."""

from flask import Blueprint

bp = Blueprint("pages", __name__)
