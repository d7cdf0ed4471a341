"""ModelDock: the application factory, read top to bottom like a table of contents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config as settings
from app.observability import jsonlog
from app.web.bodies import ChunkedBodyLimit
from app.web.finite_json import FiniteJSONProvider
from app.web.outages import SpoolingRequest

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults → instance/config.py → environment → ``config``."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    load_config(app, config)
    app.request_class = SpoolingRequest  # uploads spooled where TMPDIR says
    app.json = FiniteJSONProvider(app)  # NaN and ±inf are written as null
    jsonlog.configure(app.config["LOG_LEVEL"], app.config["MODELDOCK_LOG_FORMAT"])
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_filters(app)
    register_commands(app)
    # A chunked body over the upload cap is a 413 like a sized one.
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, app.config)
    if app.config["MODELDOCK_PROXY_HOPS"]:
        hops = app.config["MODELDOCK_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    return app


def load_config(app: Flask, overrides: dict[str, Any] | None) -> None:
    app.config.update(settings.defaults())
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(settings.from_environment())
    app.config.update(overrides or {})
    settings.finalize(app.config, app.instance_path)


def register_extensions(app: Flask) -> None:
    from app.auth import permissions, sessions, sso
    from app.batch import runner as batch_runner
    from app.extensions import (
        cache,
        cors,
        csrf,
        db,
        limiter,
        login_manager,
        migrate,
        ratelimit,
    )
    from app.models import User
    from app.monitoring import drift
    from app.observability import metrics, request_log
    from app.serving import prediction_cache, state
    from app.web import security_headers
    from app.web.paths import cors_resources

    security_headers.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    sessions.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    sso.init_app(app)  # the OpenID provider for browsers, when configured
    csrf.init_app(app)
    cache.init_app(app)
    cors.init_app(app, resources=cors_resources(app.config["MODELDOCK_CORS_ORIGINS"]))
    state.init_app(app)
    prediction_cache.init_app(app)
    request_log.init_app(app)
    drift.init_app(app)
    metrics.init_app(app)
    permissions.init_app(app)  # must run before the limiter, which keys on its result
    ratelimit.init_app(app)  # before the limiter, so its hook runs after the limiter's
    limiter.init_app(app)
    batch_runner.init_app(app)  # the broker's client, when batch jobs use Celery

    @login_manager.user_loader
    def load_user(user_id: str):
        user = db.session.get(User, int(user_id))
        return user if user is not None and user.enabled else None  # disabled: out


def register_blueprints(app: Flask) -> None:
    from app import admin, pages
    from app.apidocs.routes import bp as apidocs_bp
    from app.auth.sign_in import bp as auth_bp
    from app.auth.sso import bp as sso_bp
    from app.extensions import csrf, limiter
    from app.extensions.ratelimit import api_rate_limit
    from app.ops.routes import bp as ops_bp
    from app.protocols.common import LabelConverter, ModelNameConverter
    from app.protocols.mlflow.routes import bp as mlflow_bp
    from app.protocols.native.feedback import bp as feedback_bp
    from app.protocols.native.routes import bp as native_bp
    from app.protocols.openinference.routes import bp as openinference_bp
    from app.protocols.tfserving.routes import bp as tfserving_bp
    from app.web.bounds import BoundedIntConverter, name_converters

    # Blueprints for scripts with API keys (in headers only, never cookies, so CSRF
    # tokens do not apply), rate limited per key. Which paths are the API, for
    # errors, CORS, sessions, OpenAPI and nginx, is app/web/paths.py.
    keyed = (
        native_bp,
        admin.api_bp,
        tfserving_bp,
        openinference_bp,
        feedback_bp,
        mlflow_bp,
    )
    for blueprint in keyed:
        csrf.exempt(blueprint)
        limiter.limit(api_rate_limit)(blueprint)
    # TF Serving's `name:verb` URLs: names and labels never contain ':'.
    app.url_map.converters.update(model=ModelNameConverter, label=LabelConverter)
    # Ids and version numbers in URLs stay within what the database columns hold.
    app.url_map.converters["int"] = BoundedIntConverter
    for blueprint in (
        pages.bp,
        auth_bp,
        native_bp,
        admin.api_bp,
        admin.pages_bp,
        ops_bp,
        tfserving_bp,
        openinference_bp,
        mlflow_bp,
        apidocs_bp,
        feedback_bp,
        sso_bp,
    ):
        app.register_blueprint(blueprint)
    name_converters(app.url_map)


def register_errorhandlers(app: Flask) -> None:
    from app.web import errors, outages

    errors.register_errorhandlers(app)
    outages.register(app)


def register_template_filters(app: Flask) -> None:
    from app.ui import formatting

    formatting.install(app)


def register_commands(app: Flask) -> None:
    from app.cli import register

    register(app)
