"""The monthly aggregates behind ``/stats``, recomputed whole by ``flask rq cron`` (nightly) and
``flask stats refresh``.

Two streamed queries read one row per request and one per need (its matches summed up by the
database); Python applies the indicators' definitions (``indicators``) and counts them per
month, région and theme; the cells replace the previous ones in one transaction, so a visitor
reads either yesterday's figures or today's, never half of each.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, func, insert, select

from app.extensions import db
from app.models import Commune, Facility, Match, Need, Solicitation, Subject
from app.models.requests import MatchStatus, SolicitationStatus
from app.models.stats import StatCell, StatRefresh
from app.services.statistics import indicators as ind

# The counted indicators (the page computes its shares from them).
REQUESTS = "demandes"
TRANSMITTED = "demandes_transmises"
NEEDS = "besoins"
EXCHANGES = "besoins_echange"
HELPED = "besoins_aide"
QUICK = "echanges_5j"
HELPED_CLOSED = "aides_cloturees"  # by month of the closing: the headline
BY_HEADCOUNT = "entreprises_effectif"
BY_SECTION = "entreprises_section"
BY_CHANNEL = "demandes_provenance"  # requests by where they came from (issue 16)
_BATCH = 5_000


@dataclass
class RefreshReport:
    requests: int = 0
    needs: int = 0
    cells: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"demandes lues : {self.requests}, besoins lus : {self.needs}",
            f"cellules écrites : {self.cells} en {self.seconds:.1f} s",
        ]


def _requests():
    stmt = (
        select(
            Solicitation.created_at,
            func.coalesce(Commune.region_code, ""),
            func.coalesce(Subject.theme_id, 0),
            Solicitation.status == SolicitationStatus.PROCESSED,
            Solicitation.channel,
        )
        .outerjoin(Commune, Commune.code == Solicitation.insee_code)
        .outerjoin(Subject, Subject.id == Solicitation.subject_id)
    )
    for row in db.session.execute(stmt.execution_options(yield_per=_BATCH)):
        yield ind.RequestFacts(row[0], row[1], row[2], bool(row[3]), row[4] or "site")


def _needs():
    exchanged = Match.status.in_([MatchStatus.DONE, MatchStatus.DONE_NO_HELP])
    helped = Match.status == MatchStatus.DONE
    response = func.coalesce(Match.taken_care_at, case((exchanged, Match.closed_at)))
    stmt = (
        select(
            Need.created_at,
            func.coalesce(Commune.region_code, ""),
            Subject.theme_id,
            Facility.id,
            Facility.headcount_code,
            Facility.naf_code,
            func.min(Match.created_at),
            func.min(response),
            func.max(case((exchanged, 1), else_=0)),
            func.max(case((helped, 1), else_=0)),
            func.min(case((and_(helped, Match.closed_at.is_not(None)), Match.closed_at))),
        )
        .join(Facility, Facility.id == Need.facility_id)
        .outerjoin(Commune, Commune.code == Facility.commune_code)
        .join(Subject, Subject.id == Need.subject_id)
        .outerjoin(Match, Match.need_id == Need.id)
        .group_by(Need.id, Commune.region_code, Subject.theme_id, Facility.id)
    )
    for row in db.session.execute(stmt.execution_options(yield_per=_BATCH)):
        yield ind.NeedFacts(
            created_at=row[0],
            region_code=row[1],
            theme_id=row[2],
            facility_id=row[3],
            headcount_code=row[4],
            naf_code=row[5],
            first_sent_at=row[6],
            first_response_at=row[7],
            exchanged=bool(row[8]),
            helped=bool(row[9]),
            helped_at=row[10],
        )


def compute_cells() -> tuple[Counter, int, int]:
    """Every count, keyed ``(month, région, theme id, indicator, key)``."""
    counts: Counter = Counter()
    requests = needs = 0
    for request in _requests():
        requests += 1
        cell = (ind.month_of(request.created_at), request.region_code, request.theme_id)
        counts[(*cell, REQUESTS, "")] += 1
        counts[(*cell, BY_CHANNEL, request.channel)] += 1
        if ind.is_transmitted(request):
            counts[(*cell, TRANSMITTED, "")] += 1
    companies: dict[tuple, set[int]] = {}
    for need in _needs():
        needs += 1
        cell = (ind.month_of(need.created_at), need.region_code, need.theme_id)
        counts[(*cell, NEEDS, "")] += 1
        if ind.had_exchange(need):
            counts[(*cell, EXCHANGES, "")] += 1
            if ind.taken_in_charge_quickly(need):
                counts[(*cell, QUICK, "")] += 1
        if ind.help_proposed(need):
            counts[(*cell, HELPED, "")] += 1
            if need.helped_at is not None:
                counts[(ind.month_of(need.helped_at), need.region_code, need.theme_id, HELPED_CLOSED, "")] += 1
        # A company counts once per cell, whatever its number of needs that month.
        seen = companies.setdefault(cell, set())
        if need.facility_id not in seen:
            seen.add(need.facility_id)
            counts[(*cell, BY_HEADCOUNT, ind.headcount_key(need.headcount_code))] += 1
            counts[(*cell, BY_SECTION, ind.a10_section(need.naf_code))] += 1
    return counts, requests, needs


def refresh() -> RefreshReport:
    """Recompute every cell and replace the previous ones (the caller's transaction)."""
    started = time.perf_counter()
    counts, requests, needs = compute_cells()
    db.session.execute(delete(StatCell))
    rows = [
        {"month": month, "region_code": region, "theme_id": theme, "indicator": indicator, "key": key, "value": value}
        for (month, region, theme, indicator, key), value in counts.items()
    ]
    for start in range(0, len(rows), _BATCH):
        db.session.execute(insert(StatCell), rows[start : start + _BATCH])
    report = RefreshReport(requests, needs, len(rows), time.perf_counter() - started)
    db.session.add(StatRefresh(requests=requests, needs=needs, cells=len(rows), seconds=report.seconds))
    db.session.flush()
    return report
