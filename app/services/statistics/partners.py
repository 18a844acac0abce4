"""The referent's dashboard (issue 15): over a chosen period, the rates of their institution or
antenne, of each antenne and each expert, a monthly trend, and the experts with the most needs
waiting — the same definitions (``reports.Rates``) as the quarterly reports.

The matches are read through the policy's scope (a referent never counts another institution's
experts), as plain columns, one query; the waiting experts, a second one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select

from app import policy
from app.dates import paris_day_start
from app.extensions import db
from app.models import Antenne, Expert, Match
from app.models.requests import MatchStatus
from app.services.statistics.figures import add_months, current_month, months_between, parse_filters
from app.services.statistics.indicators import month_of
from app.services.statistics.reports import Rates

DEFAULT_MONTHS = 3
TOP_EXPERTS = 30
TOP_WAITING = 10


@dataclass
class PartnerDashboard:
    start: date
    end: date
    errors: list[str]
    total: Rates = field(default_factory=Rates)
    antennes: list[tuple[str, Rates]] = field(default_factory=list)
    experts: list[tuple[str, str, Rates]] = field(default_factory=list)  # (expert, antenne, rates)
    expert_count: int = 0
    monthly: list[tuple[date, Rates]] = field(default_factory=list)
    waiting: list[tuple[int, str, str, int]] = field(default_factory=list)  # (id, expert, antenne, waiting)


def dashboard_period(args: Any) -> tuple[date, date, list[str]]:
    """The period from ``debut``/``fin`` (AAAA-MM), by default the last three full months; the
    public statistics' rules and French messages."""
    filters = parse_filters(
        {
            "debut": args.get("debut") or add_months(current_month(), -DEFAULT_MONTHS).strftime("%Y-%m"),
            "fin": args.get("fin") or add_months(current_month(), -1).strftime("%Y-%m"),
        }
    )
    return filters.start, filters.end, filters.errors


def partner_dashboard(user: Any, start: date, end: date, errors: list[str] | None = None) -> PartnerDashboard:
    board = PartnerDashboard(start, end, list(errors or []))
    since, until = paris_day_start(start), paris_day_start(add_months(end, 1))
    stmt = (
        select(
            Match.status,
            Match.created_at,
            Match.taken_care_at,
            Expert.id,
            Expert.full_name,
            Antenne.id,
            Antenne.name,
        )
        .join(Expert, Expert.id == Match.expert_id)
        .join(Antenne, Antenne.id == Expert.antenne_id)
        .where(Match.created_at >= since, Match.created_at < until)
    )
    by_antenne: dict[int, tuple[str, Rates]] = {}
    by_expert: dict[int, tuple[str, str, Rates]] = {}
    monthly = {month: Rates() for month in months_between(start, end)}
    for status, created_at, taken_care_at, expert_id, expert, antenne_id, antenne in db.session.execute(
        policy.scope_query(user, Match, stmt)
    ):
        row = _Row(status, created_at, taken_care_at)
        board.total.add(row)
        by_antenne.setdefault(antenne_id, (antenne, Rates()))[1].add(row)
        by_expert.setdefault(expert_id, (expert, antenne, Rates()))[2].add(row)
        month = month_of(created_at)
        if month in monthly:
            monthly[month].add(row)
    board.antennes = sorted(by_antenne.values(), key=lambda item: item[0].casefold())
    ranked = sorted(by_expert.values(), key=lambda item: (-item[2].matches, item[0].casefold()))
    board.expert_count = len(ranked)
    board.experts = ranked[:TOP_EXPERTS]
    board.monthly = list(monthly.items())
    waiting = (
        select(Expert.id, Expert.full_name, Antenne.name, func.count(Match.id))
        .join(Expert, Expert.id == Match.expert_id)
        .join(Antenne, Antenne.id == Expert.antenne_id)
        .where(Match.status == MatchStatus.QUO, Expert.deleted_at.is_(None))
        .group_by(Expert.id, Expert.full_name, Antenne.name)
        .order_by(func.count(Match.id).desc(), Expert.full_name)
        .limit(TOP_WAITING)
    )
    board.waiting = [tuple(row) for row in db.session.execute(policy.scope_query(user, Match, waiting))]
    return board


@dataclass(frozen=True)
class _Row:
    status: str
    created_at: Any
    taken_care_at: Any
