"""The expert's inbox: all of one expert's matches, sorted into tabs by where the expert stands.

A request still waiting for an answer after ``FOLLOWUP_FAILURE_DAYS`` (45 by default, as in the
older app) is not put in front of the expert any more: it moves from « À traiter » to
« Expirés », so the first tab stays a list of things one can still act on.

The page reads one grouped count for every tab and one query for the open tab, whatever the
number of matches: an expert of a national network may have thousands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select
from sqlalchemy.orm import contains_eager

from app.extensions import db
from app.models import Expert, Facility, Match, Need
from app.models.base import utcnow
from app.models.requests import MatchStatus

DONE_STATUSES = (MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE)


@dataclass(frozen=True)
class Tab:
    key: str  # the ``?onglet=`` value
    label: str
    empty: str  # what an empty tab says


TABS = (
    Tab("a-traiter", "À traiter", "Aucune demande n'attend votre réponse."),
    Tab("en-cours", "En cours", "Aucune demande en cours de traitement."),
    Tab("clotures", "Clôturés", "Aucune demande clôturée."),
    Tab("refuses", "Refusés", "Vous n'avez refusé aucune demande."),
    Tab("expires", "Expirés", "Aucune demande expirée."),
)
TAB_KEYS = tuple(tab.key for tab in TABS)
DEFAULT_TAB = TABS[0].key
# Without pagination, a tab shows this many rows at most; the page says when there are more.
ROW_LIMIT = 200


@dataclass(frozen=True)
class Inbox:
    expert: Expert
    tab: Tab
    counts: dict[str, int]  # every tab key, zero included
    matches: list[Match]  # the open tab's, newest first, need/subject/company/commune loaded
    expiry_days: int

    @property
    def truncated(self) -> bool:
        return self.counts[self.tab.key] > len(self.matches)


def expiry_days() -> int:
    return int(current_app.config["FOLLOWUP_FAILURE_DAYS"])


def _cutoff() -> datetime:
    return utcnow() - timedelta(days=expiry_days())


def _tab_of(cutoff: datetime):
    """The SQL expression naming each match's tab, so that counting and listing agree."""
    return case(
        ((Match.status == MatchStatus.QUO) & (Match.created_at < cutoff), "expires"),
        (Match.status == MatchStatus.QUO, "a-traiter"),
        (Match.status == MatchStatus.TAKING_CARE, "en-cours"),
        (Match.status.in_(DONE_STATUSES), "clotures"),
        else_="refuses",
    )


def tab_counts(expert: Expert, cutoff: datetime | None = None) -> dict[str, int]:
    """How many matches each tab holds, in one grouped query."""
    # Labelled in a subquery: PostgreSQL would not match a GROUP BY on the CASE itself, whose
    # cutoff is bound as two different parameters.
    tabs = select(_tab_of(cutoff or _cutoff()).label("tab")).where(Match.expert_id == expert.id).subquery()
    rows = db.session.execute(select(tabs.c.tab, func.count()).group_by(tabs.c.tab))
    counts = dict.fromkeys(TAB_KEYS, 0)
    counts.update({key: count for key, count in rows})  # noqa: C416  (rows, not pairs)
    return counts


def tab_matches(expert: Expert, key: str, cutoff: datetime | None = None, limit: int = ROW_LIMIT) -> list[Match]:
    """The matches of one tab, newest first, with everything a row shows loaded by the same query."""
    query = (
        select(Match)
        .join(Match.need)
        .join(Need.subject)
        .join(Need.facility)
        .join(Facility.company)
        .join(Facility.commune)
        .where(Match.expert_id == expert.id, _tab_of(cutoff or _cutoff()) == key)
        .options(
            contains_eager(Match.need).contains_eager(Need.subject),
            contains_eager(Match.need).contains_eager(Need.facility).contains_eager(Facility.company),
            contains_eager(Match.need).contains_eager(Need.facility).contains_eager(Facility.commune),
        )
        .order_by(Match.created_at.desc(), Match.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def inbox(expert: Expert, tab_key: str | None = None) -> Inbox:
    """The inbox opened on ``tab_key``; an unknown or missing key opens « À traiter »."""
    key = tab_key if tab_key in TAB_KEYS else DEFAULT_TAB
    cutoff = _cutoff()
    return Inbox(
        expert=expert,
        tab=next(tab for tab in TABS if tab.key == key),
        counts=tab_counts(expert, cutoff),
        matches=tab_matches(expert, key, cutoff, limit=ROW_LIMIT),
        expiry_days=expiry_days(),
    )
