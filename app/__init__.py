"""Place des Entreprises: the application factory.

``create_app`` only binds extensions and registers blueprints, CLI and admin views;
nothing touches the database or the network at import time.
"""

from __future__ import annotations

import logging

from flask import Flask

from app.templating import LoudUndefined
from config import INSTANCE, config_for


def create_app(config_name: str | None = None, **overrides) -> Flask:
    app = Flask(__name__, instance_path=str(INSTANCE), instance_relative_config=True)
    settings = config_for(config_name)
    app.config.from_object(settings)
    app.config.update(overrides)
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY doit être défini en production.")
    if app.config["ENV_NAME"] == "production" and not app.config.get("REDIS_URL"):
        # Without Redis, jobs would run inside web requests and rate limits would count per process.
        raise RuntimeError("REDIS_URL doit être défini en production (file des tâches et limites de débit).")
    INSTANCE.mkdir(exist_ok=True)
    if app.config.get("JINJA_LOUD_UNDEFINED"):
        app.jinja_env.undefined = LoudUndefined
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from app.extensions import babel, csrf, db, limiter, login_manager, mail, migrate, rq

    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    babel.init_app(app, locale_selector=lambda: "fr")
    mail.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    rq.init_app(app)
    if not app.config.get("REDIS_URL") and not app.testing:
        app.logger.info("REDIS_URL absent : les tâches sont exécutées dans le processus (RQ_ASYNC=False).")

    from app import models  # noqa: F401  (every table known to Alembic and the admin)
    from app.services import audit, transactions
    from app.services.requests import search

    audit.init_app(app)
    transactions.init_app(app)
    search.init_app(app)

    from app import guards, headers

    guards.init_app(app)
    headers.init_app(app)

    from app.auth import init_app as init_auth

    init_auth(app, login_manager)

    from app.services.requests.validation import display_phone

    app.add_template_filter(display_phone, "phone")

    from app.public import bp as public_bp

    app.register_blueprint(public_bp)

    from app.partners import bp as partners_bp

    app.register_blueprint(partners_bp)

    from app.api import bp as api_bp

    app.register_blueprint(api_bp)

    from app.experts import bp as experts_bp

    app.register_blueprint(experts_bp)

    from app.experts.inbox import bp as inbox_bp

    app.register_blueprint(inbox_bp)

    from app.inbound import bp as inbound_bp

    app.register_blueprint(inbound_bp)

    from app.admin import init_app as init_admin

    init_admin(app)

    from app.cli import init_app as init_cli

    init_cli(app)

    from app.jobs import init_app as init_jobs

    init_jobs(app)

    logging.basicConfig(level=logging.INFO)
    # The root handler prints the app's records already; Flask's own would print them twice.
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)
    return app
