"""The few figures that tell staff where work is waiting (the back office's home).

Every figure is counted here, in four aggregate queries (one per table), so the home page
costs the same whatever the volume. The links from each figure into the lists are the back
office's (``app/admin/home.py``).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import case, func, select

from app.dates import PARIS, as_utc
from app.extensions import db
from app.models import Commune, Facility, Match, Need, Solicitation
from app.models.outbox import EmailState, FailureCause, OutboundEmail
from app.models.requests import MatchStatus, NeedStatus, SolicitationStatus

# A need whose experts have all stayed silent this long deserves a call from staff.
DEFAULT_NO_TAKER_DAYS = 5
# The outbox job retries within minutes; an email queued longer than this is stuck.
STALE_QUEUE_DELAY = timedelta(hours=1)


def week_start(now: datetime) -> datetime:
    """Monday 00:00 in Paris (as staff count weeks), returned in UTC for the queries."""
    local = now.astimezone(PARIS)
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, tzinfo=PARIS).astimezone(UTC)


def no_taker_days() -> int:
    """How long a need may wait for a taker before the home page points at it (configurable)."""
    return int(current_app.config.get("DASHBOARD_NO_TAKER_DAYS", DEFAULT_NO_TAKER_DAYS))


def dashboard_figures(now: datetime | None = None) -> dict[str, Any]:
    """The home page's figures, in a constant number of queries (one per table).

    - ``to_qualify``: solicitations waiting for staff (``in_progress``), and ``oldest_age`` of
      the oldest one (a ``timedelta``, ``None`` when the queue is empty), because a long wait is
      what staff must fix first;
    - ``no_taker``: needs still ``quo`` (no expert took them) created more than
      ``no_taker_days`` days ago;
    - ``failed_emails`` (the outbox gave up), among them ``defective_emails`` (refused for a
      defect of the message itself: ours to fix, then re-send), and ``stale_emails`` (queued for
      more than an hour: the worker or SMTP may be down);
    - ``week`` and ``last_week``: solicitations received, needs created, matches taken in charge
      since Monday 00:00 Paris time, and over the whole week before, for comparison.
    """
    now = now or datetime.now(UTC)
    this_monday = week_start(now)
    last_monday = this_monday - timedelta(days=7)
    days = no_taker_days()

    def this_week(column):
        return func.count().filter(column >= this_monday)

    def previous_week(column):
        return func.count().filter(column >= last_monday, column < this_monday)

    solicitations = db.session.execute(
        select(
            func.count().filter(Solicitation.status == SolicitationStatus.IN_PROGRESS),
            func.min(Solicitation.created_at).filter(Solicitation.status == SolicitationStatus.IN_PROGRESS),
            this_week(Solicitation.created_at),
            previous_week(Solicitation.created_at),
        ).where((Solicitation.status == SolicitationStatus.IN_PROGRESS) | (Solicitation.created_at >= last_monday))
    ).one()
    needs = db.session.execute(
        select(
            func.count().filter(Need.status == NeedStatus.QUO, Need.created_at < now - timedelta(days=days)),
            this_week(Need.created_at),
            previous_week(Need.created_at),
        ).where((Need.status == NeedStatus.QUO) | (Need.created_at >= last_monday))
    ).one()
    matches = db.session.execute(
        select(this_week(Match.taken_care_at), previous_week(Match.taken_care_at)).where(
            Match.taken_care_at >= last_monday
        )
    ).one()
    emails = db.session.execute(
        select(
            func.count().filter(OutboundEmail.state == EmailState.FAILED),
            func.count().filter(
                OutboundEmail.state == EmailState.QUEUED, OutboundEmail.created_at < now - STALE_QUEUE_DELAY
            ),
            func.count().filter(
                OutboundEmail.state == EmailState.FAILED, OutboundEmail.failure_cause == FailureCause.MESSAGE
            ),
        ).where(OutboundEmail.state.in_((EmailState.FAILED, EmailState.QUEUED)))
    ).one()

    oldest = as_utc(solicitations[1])
    return {
        "now": now,
        "week_start": this_monday,
        "no_taker_days": days,
        "to_qualify": solicitations[0],
        "oldest_age": (now - oldest) if oldest else None,
        "no_taker": needs[0],
        "failed_emails": emails[0],
        "stale_emails": emails[1],
        "defective_emails": emails[2],
        "week": {"solicitations": solicitations[2], "needs": needs[1], "taken_care": matches[0]},
        "last_week": {"solicitations": solicitations[3], "needs": needs[2], "taken_care": matches[1]},
    }


def age_text(age: timedelta | None) -> str:
    """« 3 jours », « 5 heures », « moins d'une heure »: how staff read a wait."""
    if age is None:
        return ""
    if age.days >= 1:
        return f"{age.days} jour{'s' if age.days > 1 else ''}"
    hours = age.seconds // 3600
    if hours >= 1:
        return f"{hours} heure{'s' if hours > 1 else ''}"
    return "moins d'une heure"


# ---------------------------------------------------------------- twelve weeks (issue 15)

TREND_WEEKS = 12


def week_starts(now: datetime, weeks: int = TREND_WEEKS) -> list[datetime]:
    """The Mondays (00:00 Paris, in UTC) of the last ``weeks`` weeks, this one last."""
    # Each Monday found in its own week: across a clock change the Paris Monday moves by an hour in UTC.
    return [week_start(now - timedelta(weeks=weeks - 1 - index)) for index in range(weeks)]


def _weekly_counts(column, starts: list[datetime], *where) -> list[int]:
    """One count per week, computed by the database in a single pass over the range (a filtered
    COUNT per week): nothing but twelve numbers comes back, whatever the volume."""
    bounds = [*starts, starts[-1] + timedelta(weeks=1)]
    counts = [func.count().filter(column >= low, column < high) for low, high in itertools.pairwise(bounds)]
    return list(db.session.execute(select(*counts).where(column >= starts[0], *where)).one())


def weekly_trends(now: datetime | None = None, weeks: int = TREND_WEEKS) -> dict[str, Any]:
    """Requests received, needs created and matches taken in charge per week (Monday to Sunday,
    Paris time) over ``weeks`` weeks: three indexed range reads, counted by the database."""
    now = now or datetime.now(UTC)
    starts = week_starts(now, weeks)
    return {
        "weeks": starts,
        "solicitations": _weekly_counts(Solicitation.created_at, starts),
        "needs": _weekly_counts(Need.created_at, starts),
        "taken_care": _weekly_counts(Match.taken_care_at, starts),
    }


def funnel(now: datetime | None = None, weeks: int = TREND_WEEKS) -> dict[str, Any]:
    """Over ``weeks`` weeks: requests received → transmitted to experts; their needs → taken in
    charge by an expert → closed with help proposed; and the median time from a need's sending
    to its first taking in charge."""
    now = now or datetime.now(UTC)
    since = week_starts(now, weeks)[0]
    received, transmitted = db.session.execute(
        select(func.count(), func.count().filter(Solicitation.status == SolicitationStatus.PROCESSED)).where(
            Solicitation.created_at >= since
        )
    ).one()
    first_taken = func.min(Match.taken_care_at)
    helped = func.max(case((Match.status == MatchStatus.DONE, 1), else_=0))
    per_need = (
        select(Need.created_at.label("created_at"), first_taken.label("first_taken"), helped.label("helped"))
        .join(Match, Match.need_id == Need.id)
        .where(Need.created_at >= since)
        .group_by(Need.id, Need.created_at)
        .subquery()
    )
    needs, taken, was_helped = db.session.execute(
        select(
            func.count(),
            func.count(per_need.c.first_taken),
            func.coalesce(func.sum(per_need.c.helped), 0),
        )
    ).one()
    # The median needs each wait; only the needs taken in charge come back, two columns each.
    waits = sorted(
        as_utc(taken_at) - as_utc(created)
        for created, taken_at in db.session.execute(
            select(per_need.c.created_at, per_need.c.first_taken).where(per_need.c.first_taken.is_not(None))
        )
    )
    return {
        "since": since,
        "received": received,
        "transmitted": transmitted,
        "needs": needs,
        "taken_care": taken,
        "helped": int(was_helped),
        "median_wait": _median(waits),
    }


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def no_taker_by_departement(now: datetime | None = None) -> dict[str, int]:
    """Needs no expert took after ``no_taker_days`` days, by département of the business."""
    now = now or datetime.now(UTC)
    stmt = (
        select(Commune.departement_code, func.count(Need.id))
        .join(Facility, Facility.id == Need.facility_id)
        .join(Commune, Commune.code == Facility.commune_code)
        .where(Need.status == NeedStatus.QUO, Need.created_at < now - timedelta(days=no_taker_days()))
        .group_by(Commune.departement_code)
    )
    return {row[0]: row[1] for row in db.session.execute(stmt)}
