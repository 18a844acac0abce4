"""Public pages (no account): the catalog home page, the request forms and the health check.

The blueprint is declared here and its views registered by importing ``views``.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("public", __name__)

from app.public import satisfaction, stats, views  # noqa: E402, F401  (registers the routes on ``bp``)
