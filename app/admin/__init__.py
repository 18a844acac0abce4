"""The back office (Flask-Admin), the main surface for staff.

Views are grouped by area: ``requests`` (the desk: solicitations, needs, matches),
``exports``, ``addressbook`` and ``catalog`` (model views), ``imports`` (the address book
upload), ``routing`` (the "who would receive it" simulator), ``coverage`` (zones blanches),
``outbox`` and ``inbound``, and ``reminders`` (the relances desk). Each module exposes ``register(admin)``.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from app.admin import coverage, exports, imports, inbound, outbox, reminders, requests, routing, views
from app.admin.formatters import paris_time
from app.admin.home import SecureIndexView
from app.headers import csp_nonce


def init_app(app: Flask) -> None:
    app.add_template_filter(paris_time, "paris_time")

    admin = Admin(
        app,
        name="Place des Entreprises",
        index_view=SecureIndexView(name="Accueil", url="/admin"),
        # Full width: the address book lists have many columns.
        theme=Bootstrap4Theme(fluid=True),
        # The inline scripts of Flask-Admin's templates and ours carry the response's nonce
        # (``app/headers.py``: no other inline script runs).
        csp_nonce_generator=csp_nonce,
    )
    requests.register(admin)
    reminders.register(admin)
    exports.register(admin)
    views.register(admin)
    imports.register(admin)
    routing.register(admin)
    coverage.register(admin)
    outbox.register(admin)
    inbound.register(admin)
    app.extensions["pde_admin"] = admin

    @app.after_request
    def _french_document(response: Response) -> Response:
        """Flask-Admin's layout writes a bare ``<html>``: screen readers need the page's
        language, and no template block reaches that tag."""
        if request.path.startswith("/admin") and response.mimetype == "text/html" and not response.direct_passthrough:
            body = response.get_data()
            if b"<html>" in body[:200]:
                response.set_data(body.replace(b"<html>", b'<html lang="fr">', 1))
        return response
