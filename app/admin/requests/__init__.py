"""Back-office views of the requests (menu « Demandes »): solicitations, needs and matches.

One module per list: ``solicitations`` (the qualification desk), ``needs`` and ``matches``
(following). Actions call service verbs; every list states its loader options and per-page
counts, so a page costs the same number of queries whatever its length.
"""

from __future__ import annotations

from flask_admin import Admin

from app.admin.requests.matches import MatchView
from app.admin.requests.needs import NeedView
from app.admin.requests.solicitations import SolicitationView
from app.extensions import db
from app.models import Match, Need, Solicitation


def register(admin: Admin) -> None:
    category = "Demandes"
    admin.add_view(
        SolicitationView(Solicitation, db, name="Sollicitations", category=category, endpoint="solicitation")
    )
    admin.add_view(NeedView(Need, db, name="Besoins", category=category, endpoint="need"))
    admin.add_view(MatchView(Match, db, name="Mises en relation", category=category, endpoint="match"))
