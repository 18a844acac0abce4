"""The few figures that tell staff where work is waiting (the back office's home).

Every figure is counted here, in four aggregate queries (one per table), so the home page
costs the same whatever the volume. The links from each figure into the lists are the back
office's (``app/admin/home.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app.dates import PARIS, as_utc
from app.extensions import db
from app.models import Match, Need, Solicitation
from app.models.outbox import EmailState, FailureCause, OutboundEmail
from app.models.requests import NeedStatus, SolicitationStatus

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
