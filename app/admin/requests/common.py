"""What the request lists share: how notes, zone entries, links and dates read."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from app import policy
from app.admin.formatters import paris_time, shortened
from app.extensions import db
from app.models import (
    CHANNEL_LABELS,
    Landing,
    Match,
)
from app.models.requests import MatchStatus
from app.services.requests.satisfaction import answer_summary

# The list shows the start of the qualification notes (French sentences written by
# ``services.solicitations``); the details page and the export show them whole.
NOTES_SUMMARY_LENGTH = 120

# A match counts as « positive » when the expert engaged with the business: staff read the
# number to see at a glance whether anyone answered.
POSITIVE_MATCH_STATUSES = (MatchStatus.TAKING_CARE, MatchStatus.DONE)

ZONE_OWNER_LABELS = {"antenne": "zone de l'antenne", "expert": "zone propre de l'expert"}


def notes_text(notes: list[str] | None) -> str:
    return " · ".join(str(note) for note in notes or [])


def notes_summary(notes: list[str] | None) -> str:
    return shortened(notes_text(notes), NOTES_SUMMARY_LENGTH)


def zone_entry(match: Match) -> str:
    """``departement:69, zone de l'antenne``: the entry that made the expert receive the need."""
    if match.zone_owner is None and match.zone is None:
        return "ajouté par l'équipe"
    owner = ZONE_OWNER_LABELS.get(match.zone_owner or "", "")
    return f"{match.zone or ''}, {owner}".strip(", ")


def _link(endpoint: str, ident: int, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url_for(endpoint, id=ident), text)


def _date(value: Any) -> str:
    return paris_time(value)


def satisfaction_text(answer) -> str:
    """The business's survey answer on one line of an export: staff see every answer, partners
    the ones staff shared (empty when the business did not answer)."""
    if answer is None or (answer.shared_at is None and not policy.is_staff(current_user)):
        return ""
    return answer_summary(answer)


def provenance_text(solicitation: Any) -> str:
    """Where a request came from, in words (issue 16): « API d'un partenaire — Portail CCI (clé
    a1b2c3…) », « Saisie par un conseiller — Camille Martin »…"""
    parts = [CHANNEL_LABELS.get(solicitation.channel, solicitation.channel)]
    if solicitation.landing is not None:
        parts.append(f"{solicitation.landing.partner.name} (landing « {solicitation.landing.slug} »)")
    if solicitation.api_key is not None:
        parts.append(f"{solicitation.api_key.institution.name}, clé {solicitation.api_key.prefix}…")
    if solicitation.filed_by is not None:
        user = solicitation.filed_by
        where = f" ({user.institution.name})" if user.institution is not None else ""
        parts.append(f"{user.full_name or user.email}{where}")
    return " — ".join(parts)


def landing_options() -> list[tuple[str, str]]:
    rows = db.session.execute(select(Landing.id, Landing.slug, Landing.title).order_by(Landing.slug))
    return [(str(i), f"{title} ({slug})") for i, slug, title in rows]
