"""The request desk: solicitation tabs and the warning flags of each row.

Tabs split the solicitations by what staff do with them:

- « À qualifier » — ``in_progress``, the queue, oldest first;
- « Transmises » — ``processed``;
- « Abandonnées » — ``canceled``, except spam;
- « Spam » — ``canceled`` as spam (``cancel_reason``, the fact that also blocks the address
  for later requests: ``cancellation.is_spam``).

Flags are computed for a page of rows in one query, whatever the page size:

- « Autre demande en cours » — another open request from the same SIRET or email
  (``duplicates``: the « Doublon » that holds a request is the narrower rule of the same notion);
- « Relance » — a ``processed`` request on the same subject from the same SIRET or email,
  made within the 21 days before this one;
- « Abandons répétés » — 2 or more ``canceled`` requests from the same SIRET or email (this
  one included when it is canceled itself).

Emails are compared without case, as the holding rule does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from app.dates import as_utc
from app.extensions import db
from app.models import Need, Solicitation
from app.models.requests import SolicitationStatus
from app.services.requests.cancellation import is_spam
from app.services.requests.duplicates import OPEN_NEED_STATUSES, OTHER_OPEN_LABEL, is_open


@dataclass(frozen=True)
class Tab:
    slug: str
    label: str


TABS = (
    Tab("a-qualifier", "À qualifier"),
    Tab("transmises", "Transmises"),
    Tab("abandonnees", "Abandonnées"),
    Tab("spam", "Spam"),
    Tab("toutes", "Toutes"),
)
# Without ``?onglet=`` the list shows every request, as before the desk (links and exports
# made then keep their meaning); the queue is one click away.
DEFAULT_TAB = "toutes"
TAB_SLUGS = frozenset(tab.slug for tab in TABS)

RELAUNCH_WINDOW = timedelta(days=21)
REPEATED_CANCELLATIONS = 2

FLAG_OTHER_OPEN = OTHER_OPEN_LABEL
FLAG_RELAUNCH = "Relance"
FLAG_CANCELLATIONS = "Abandons répétés"


def tab_slug(value: str | None) -> str:
    """The tab asked for, or « Toutes » when the value is missing or unknown."""
    return value if value in TAB_SLUGS else DEFAULT_TAB


def tab_condition(slug: str) -> Any | None:
    """The WHERE condition of a tab (None for « Toutes »)."""
    if slug == "a-qualifier":
        return Solicitation.status == SolicitationStatus.IN_PROGRESS
    if slug == "transmises":
        return Solicitation.status == SolicitationStatus.PROCESSED
    if slug == "abandonnees":
        return and_(Solicitation.status == SolicitationStatus.CANCELED, ~is_spam())
    if slug == "spam":
        return is_spam()
    return None


def tab_counts(scope: Any = None, *, cap: int | None = None, with_spam: bool = True) -> dict[str, int | None]:
    """How many solicitations each tab holds.

    ``scope`` restricts each SELECT (the back office passes its policy scope). With ``cap``,
    each status is counted up to ``cap + 1`` rows through its index (a value over ``cap``
    means « more than cap »): at national volume an exact count of every processed request
    costs more than the page. Telling spam from other cancellations reads each canceled
    request's notes; without ``with_spam`` those two tabs are not counted (None) — the list
    counts them when one of them is open.
    """
    scope = scope or (lambda query: query)

    def count(condition: Any) -> int:
        rows = scope(select(Solicitation.id).where(condition))
        if cap is not None:
            rows = rows.limit(cap + 1)
        return db.session.scalar(select(func.count()).select_from(rows.subquery())) or 0

    counts: dict[str, int | None] = {
        "a-qualifier": count(Solicitation.status == SolicitationStatus.IN_PROGRESS),
        "transmises": count(Solicitation.status == SolicitationStatus.PROCESSED),
    }
    canceled = count(Solicitation.status == SolicitationStatus.CANCELED)
    if with_spam:
        spam = count(is_spam())
        counts["spam"], counts["abandonnees"] = spam, canceled - spam
    else:
        counts["spam"] = counts["abandonnees"] = None
    counts["toutes"] = counts["a-qualifier"] + counts["transmises"] + canceled
    if cap is not None:
        counts = {slug: None if value is None else min(value, cap + 1) for slug, value in counts.items()}
    return counts


@dataclass
class _Other:
    id: int
    siret: str
    email: str
    status: str
    subject_id: int
    created_at: datetime
    need_status: str | None


def flags_for(rows: Iterable[Solicitation]) -> dict[int, list[str]]:
    """The flags of each row, by solicitation id, in one query for the whole page."""
    rows = list(rows)
    flags: dict[int, list[str]] = {row.id: [] for row in rows}
    if not rows:
        return flags
    sirets = {row.siret for row in rows}
    emails = {row.email.lower() for row in rows}
    since = min(as_utc(row.created_at) for row in rows) - RELAUNCH_WINDOW
    related = db.session.execute(
        select(
            Solicitation.id,
            Solicitation.siret,
            func.lower(Solicitation.email),
            Solicitation.status,
            Solicitation.subject_id,
            Solicitation.created_at,
            Need.status,
        )
        .outerjoin(Need, Need.solicitation_id == Solicitation.id)
        .where(
            or_(Solicitation.siret.in_(sirets), func.lower(Solicitation.email).in_(emails)),
            or_(
                Solicitation.status.in_((SolicitationStatus.IN_PROGRESS, SolicitationStatus.CANCELED)),
                and_(
                    Solicitation.status == SolicitationStatus.PROCESSED,
                    or_(Need.status.in_(OPEN_NEED_STATUSES), Solicitation.created_at >= since),
                ),
            ),
        )
    ).all()
    for row in rows:
        email = row.email.lower()
        created = as_utc(row.created_at)
        same = [_Other(*values) for values in related if values[1] == row.siret or values[2] == email]
        other_open = any(other.id != row.id and is_open(other.status, other.need_status) for other in same)
        relaunch = any(
            other.id != row.id
            and other.status == SolicitationStatus.PROCESSED
            and other.subject_id == row.subject_id
            and created - RELAUNCH_WINDOW <= as_utc(other.created_at) < created
            for other in same
        )
        canceled = sum(1 for other in same if other.status == SolicitationStatus.CANCELED)
        if other_open:
            flags[row.id].append(FLAG_OTHER_OPEN)
        if relaunch:
            flags[row.id].append(FLAG_RELAUNCH)
        if canceled >= REPEATED_CANCELLATIONS:
            flags[row.id].append(FLAG_CANCELLATIONS)
    return flags
