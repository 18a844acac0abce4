"""The partners' API (issue 16): ``/api/v1``, keys per institution, JSON in and out.

``views`` holds the endpoints, ``spec`` the OpenAPI 3 description they answer to (served as
``/api/v1/openapi.json`` and read in French at ``/api/v1/docs``). No cookie is read or set:
the bearer key is the only credential, so the blueprint is exempt from the forms' CSRF.
"""

from __future__ import annotations

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

from app.api import views  # noqa: E402, F401  (registers the routes on ``bp``)
