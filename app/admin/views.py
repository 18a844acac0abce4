"""The back office's model views, grouped by menu: « Annuaire », « Catalogue », « Administration »."""

from __future__ import annotations

from flask_admin import Admin

from app.admin import addressbook, catalog, partners, routing_filters, users


def register(admin: Admin) -> None:
    addressbook.register(admin)
    catalog.register(admin)
    routing_filters.register(admin)
    partners.register(admin)
    users.register(admin)
