"""What the request lists share: how notes, zone entries, links and dates read."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask_login import current_user
from markupsafe import Markup

from app import policy
from app.admin.formatters import paris_time, shortened
from app.models import (
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
