"""The back office (Flask-Admin), the main surface for staff.

Views are grouped by area: ``addressbook`` and ``catalog`` (model views), ``imports``
(the address book upload) and ``routing`` (the "who would receive it" simulator). Each
module exposes ``register(admin)``.
"""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme


def init_app(app: Flask) -> None:
    from app.admin import coverage, exports, imports, inbound, outbox, requests, routing, views
    from app.admin.base import SecureIndexView, paris_time

    app.add_template_filter(paris_time, "paris_time")

    admin = Admin(
        app,
        name="Place des Entreprises",
        index_view=SecureIndexView(name="Accueil", url="/admin"),
        # Full width: the address book lists have many columns.
        theme=Bootstrap4Theme(fluid=True),
    )
    requests.register(admin)
    exports.register(admin)
    views.register(admin)
    imports.register(admin)
    routing.register(admin)
    coverage.register(admin)
    outbox.register(admin)
    inbound.register(admin)
    app.extensions["pde_admin"] = admin
