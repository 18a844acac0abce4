"""The back office's model views, grouped by menu: « Annuaire », « Catalogue », « Administration »."""

from __future__ import annotations

from flask_admin import Admin


def register(admin: Admin) -> None:
    from app.admin import addressbook, catalog, users

    addressbook.register(admin)
    catalog.register(admin)
    users.register(admin)
