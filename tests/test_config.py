"""Configuration: every setting is documented; production refuses unsafe defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from app.config import SETTINGS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_configuration_page_documents_every_setting():
    text = PAGE.read_text()
    missing = [s.key for s in SETTINGS if f"| `{s.key}` |" not in text]
    assert missing == []


def test_production_requires_a_secret_key(monkeypatch):
    monkeypatch.setenv("MODELDOCK_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"DATABASE_URL": "sqlite://"})


def test_production_settings_are_secure(monkeypatch):
    monkeypatch.setenv("MODELDOCK_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    monkeypatch.setenv("MODELDOCK_MAX_UPLOAD_MB", "5")
    app = create_app({"DATABASE_URL": "sqlite://"})
    assert app.debug is False
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024


def test_postgres_urls_use_psycopg3(monkeypatch):
    app = create_app({"DATABASE_URL": "postgresql://u@h/db", "SECRET_KEY": "x"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
