"""Partners' quarterly reports and monthly files (issue 15): for each institution, and each of its antennes, an XLSX
file with a summary sheet (the rates of each antenne and of the whole) and one sheet per antenne
(its rates, then the list of its matches of the quarter).

Built by ``flask rq cron`` on the first day of each quarter for the quarter just ended (and on the
first day of each month for the month just ended), or by ``flask reports build --quarter 2026-Q3
[--institution SLUG]`` (``--month 2026-11`` for a month). Rebuilding a quarter replaces its
files (idempotent); each referent is emailed once per report (an outbox key), with a link to
« Mes exports » where the files are offered.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.dates import in_paris, paris_day_start
from app.extensions import db
from app.models import Antenne, Expert, Institution, Match, Need, PartnerReport, User
from app.models.requests import MATCH_STATUS_LABELS, MatchStatus
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email
from app.services.spreadsheets import XlsxWriter
from app.services.statistics.figures import month_label

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
TAKEN = (MatchStatus.TAKING_CARE, MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE)
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def parse_quarter(text: str) -> tuple[str, date, date]:
    """``2026-Q3`` → (the period, its first day, the first day after it), in Paris time."""
    found = _QUARTER.match((text or "").strip().upper())
    if not found or not 2000 <= int(found.group(1)) <= 2100:
        raise ServiceError(f"Trimestre illisible : « {text} » (attendu : AAAA-Qn, par exemple 2026-Q3).")
    year, quarter = int(found.group(1)), int(found.group(2))
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return f"{year}-Q{quarter}", start, end


def parse_period(text: str) -> tuple[str, date, date]:
    """A quarter (``2026-Q3``) or a month (``2026-11``): the period, its first day, the day after."""
    if "Q" in (text or "").upper():
        return parse_quarter(text)
    found = _MONTH.match((text or "").strip())
    if not found or not 2000 <= int(found.group(1)) <= 2100:
        raise ServiceError(f"Mois illisible : « {text} » (attendu : AAAA-MM, par exemple 2026-11).")
    year, month = int(found.group(1)), int(found.group(2))
    after = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return f"{year}-{month:02d}", date(year, month, 1), after


def previous_month(today: date) -> str:
    return f"{today.year - 1}-12" if today.month == 1 else f"{today.year}-{today.month - 1:02d}"


def previous_quarter(today: date) -> str:
    quarter = (today.month - 1) // 3  # the current quarter's index, 0-based: the previous one is this
    return f"{today.year - 1}-Q4" if quarter == 0 else f"{today.year}-Q{quarter}"


@dataclass
class Rates:
    """What partners read of their experts' answers over a period (counts and shares)."""

    matches: int = 0
    positioned: int = 0  # the expert answered (anything but « en attente »)
    taken: int = 0  # taken in charge, closed or not
    helped: int = 0
    no_help: int = 0
    not_reachable: int = 0
    refused: int = 0
    within_3: int = 0
    within_5: int = 0

    def add(self, match: Match) -> None:
        self.matches += 1
        status = match.status
        self.positioned += status != MatchStatus.QUO
        self.taken += status in TAKEN
        self.helped += status == MatchStatus.DONE
        self.no_help += status == MatchStatus.DONE_NO_HELP
        self.not_reachable += status == MatchStatus.DONE_NOT_REACHABLE
        self.refused += status == MatchStatus.NOT_FOR_ME
        if match.taken_care_at is not None and match.created_at is not None:
            waited = match.taken_care_at - match.created_at
            self.within_3 += waited <= timedelta(days=3)
            self.within_5 += waited <= timedelta(days=5)

    def share(self, count: int) -> float | None:
        return round(100 * count / self.matches, 1) if self.matches else None

    ROWS = (
        ("Mises en relation", "matches", False),
        ("Taux de positionnement (%)", "positioned", True),
        ("Prises en charge (%)", "taken", True),
        ("Aide proposée (%)", "helped", True),
        ("Pas d'aide disponible (%)", "no_help", True),
        ("Entreprise injoignable (%)", "not_reachable", True),
        ("Refusées (%)", "refused", True),
        ("Prises en charge en 3 jours (%)", "within_3", True),
        ("Prises en charge en 5 jours (%)", "within_5", True),
    )

    def values(self) -> list[float | int | None]:
        return [self.share(getattr(self, name)) if share else getattr(self, name) for _l, name, share in self.ROWS]


@dataclass
class BuildReport:
    period: str
    built: list[PartnerReport] = field(default_factory=list)
    emailed: int = 0

    def lines(self) -> list[str]:
        return [f"{self.period} : {len(self.built)} rapport(s) construit(s), {self.emailed} référent(s) prévenu(s)"]


def _matches(institution: Institution, start: datetime, end: datetime) -> list[Match]:
    return list(
        db.session.scalars(
            select(Match)
            .join(Expert, Expert.id == Match.expert_id)
            .join(Antenne, Antenne.id == Expert.antenne_id)
            .where(Antenne.institution_id == institution.id, Match.created_at >= start, Match.created_at < end)
            .options(
                selectinload(Match.expert).selectinload(Expert.antenne),
                selectinload(Match.need).selectinload(Need.subject),
                selectinload(Match.need).selectinload(Need.facility),
            )
            .order_by(Match.created_at, Match.id)
        )
    )


MATCH_HEADERS = [
    "Envoyée le",
    "Sujet",
    "Entreprise (SIRET)",
    "Commune",
    "Expert",
    "Statut",
    "Prise en charge le",
    "Clôturée le",
]


def _workbook(title: str, period: str, antennes: list[Antenne], by_antenne: dict[int, list[Match]]) -> bytes:
    rates = {antenne.id: Rates() for antenne in antennes}
    total = Rates()
    for antenne in antennes:
        for match in by_antenne.get(antenne.id, []):
            rates[antenne.id].add(match)
            total.add(match)
    writer = XlsxWriter(io.BytesIO(), ["Antenne", *(label for label, _n, _s in Rates.ROWS)], "Synthèse")
    for antenne in antennes:
        writer.write([antenne.name, *rates[antenne.id].values()])
    writer.write([f"{title} — ensemble ({period})", *total.values()])
    used: set[str] = {"Synthèse"}
    for antenne in antennes:
        name = re.sub(r"[\[\]:*?/\\]", " ", antenne.name)[:28]
        while name in used:
            name = name[:26] + f"-{len(used)}"
        used.add(name)
        writer.add_sheet(["Indicateur", "Valeur"], name)
        for (label, _name, _share), value in zip(Rates.ROWS, rates[antenne.id].values(), strict=True):
            writer.write([label, value])
        writer.write([])
        writer.write(MATCH_HEADERS)
        for match in by_antenne.get(antenne.id, []):
            need = match.need
            writer.write(
                [
                    _local(match.created_at),
                    need.subject.label,
                    need.facility.siret,
                    need.facility.commune_code,
                    match.expert.full_name,
                    MATCH_STATUS_LABELS.get(match.status, match.status),
                    _local(match.taken_care_at),
                    _local(match.closed_at),
                ]
            )
    return writer.finish()


def _local(moment: datetime | None) -> datetime | None:
    """A date cell in Paris time (a spreadsheet has no time zones)."""
    return in_paris(moment).replace(tzinfo=None) if moment is not None else None


def _store(institution: Institution, antenne: Antenne | None, period: str, content: bytes, count: int) -> PartnerReport:
    scope = f"antenne:{antenne.id}" if antenne is not None else f"institution:{institution.id}"
    report = db.session.scalar(
        select(PartnerReport).where(PartnerReport.scope == scope, PartnerReport.period == period)
    )
    slug = institution.slug + (f"-antenne-{antenne.id}" if antenne is not None else "")
    if report is None:
        report = PartnerReport(institution=institution, antenne=antenne, scope=scope, period=period)
        db.session.add(report)
    report.filename = f"rapport-{slug}-{period}.xlsx"
    report.content = content
    report.matches = count
    return report


def build_reports(quarter: str, institution_slug: str | None = None) -> BuildReport:
    """Build (or rebuild) the reports of a quarter (``2026-Q3``) or a month (``2026-11``) for every
    live institution, or one, and tell their referents; in the caller's transaction."""
    period, first, after = parse_period(quarter)
    start, end = paris_day_start(first), paris_day_start(after)
    stmt = select(Institution).where(Institution.deleted_at.is_(None)).order_by(Institution.name)
    if institution_slug:
        stmt = stmt.where(Institution.slug == institution_slug.strip())
    institutions = list(db.session.scalars(stmt))
    if institution_slug and not institutions:
        raise ServiceError(f"Institution inconnue : « {institution_slug} ».")
    result = BuildReport(period)
    for institution in institutions:
        antennes = [a for a in institution.antennes if a.deleted_at is None]
        by_antenne: dict[int, list[Match]] = {}
        for match in _matches(institution, start, end):
            by_antenne.setdefault(match.expert.antenne_id, []).append(match)
        whole = _workbook(institution.name, period, antennes, by_antenne)
        count = sum(len(rows) for rows in by_antenne.values())
        reports = [(None, _store(institution, None, period, whole, count))]
        for antenne in antennes:
            content = _workbook(antenne.name, period, [antenne], by_antenne)
            reports.append(
                (antenne, _store(institution, antenne, period, content, len(by_antenne.get(antenne.id, []))))
            )
        db.session.flush()
        result.built += [report for _a, report in reports]
        result.emailed += _tell_referents(institution, reports, period)
    return result


def _tell_referents(institution: Institution, reports: list, period: str) -> int:
    """One email per referent and report: an institution referent for the institution's file,
    an antenne referent for their antenne's. The outbox key keeps it single on a rebuild."""
    referents = db.session.scalars(
        select(User).where(User.role == "referent", User.institution_id == institution.id, User.email.is_not(None))
    ).all()
    sent = 0
    for user in referents:
        for antenne, report in reports:
            if (antenne.id if antenne is not None else None) != user.antenne_id:
                continue
            queued = queue_email(
                f"report:{report.scope}:{period}:user:{user.id}",
                to=user.email,
                template="partner_report_ready",
                context={
                    "full_name": user.full_name or user.email,
                    "scope_name": antenne.name if antenne is not None else institution.name,
                    "period": period_label(period),
                    "exports_url": f"{current_app.config['BASE_URL']}/admin/exports/",
                },
            )
            sent += 1 if queued is not False else 0
    return sent


def period_label(period: str) -> str:
    """« 3e trimestre 2026 », « mois de novembre 2026 »."""
    if "-Q" in period:
        year, quarter = period.split("-Q")
        return f"{'1er' if quarter == '1' else quarter + 'e'} trimestre {year}"
    year, month = period.split("-")
    return f"mois de {month_label(date(int(year), int(month), 1))}"


def reports_for(user) -> list[PartnerReport]:
    """The reports a person may download: a referent their institution's or antenne's, staff all."""
    from app import policy

    stmt = select(PartnerReport).order_by(PartnerReport.period.desc(), PartnerReport.scope).limit(200)
    if policy.is_staff(user):
        return list(db.session.scalars(stmt))
    if not policy.is_referent(user):
        return []
    if user.antenne_id is not None:
        stmt = stmt.where(PartnerReport.antenne_id == user.antenne_id)
    else:
        stmt = stmt.where(PartnerReport.institution_id == user.institution_id, PartnerReport.antenne_id.is_(None))
    return list(db.session.scalars(stmt))
