"""Partners' landings (issue 16): a partner's own page on this site (``/partenaires/<landing>``)
and the same landing embedded in a frame on the partner's site (``/iframe/<landing>``, in four
shapes). The request form and its rules are the public form's (``public.views.form_flow``).
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("partners", __name__)

from app.partners import views  # noqa: E402, F401  (registers the routes on ``bp``)
