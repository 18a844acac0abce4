"""The back office (Flask-Admin), the main surface for staff."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from flask_admin import Admin

    from app.extensions import db  # noqa: F401

    admin = Admin(app, name="Place des Entreprises")
    app.extensions["pde_admin"] = admin
