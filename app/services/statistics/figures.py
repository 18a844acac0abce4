"""What ``/stats``, ``/stats.csv`` and ``/stats.json`` show: the series of the selected months,
région and theme, read from the aggregates (a few hundred cells, never the requests).

In a filtered view (a région or a theme chosen), a count from 1 to 4 is shown as « moins de 5 »,
and so is a share whose numerator or denominator is: no single business can be recognised in a
small territory's figures. The national, unfiltered figures are shown as they are.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select

from app.dates import in_paris, utcnow
from app.extensions import db
from app.models import Region, Theme
from app.models.partners import CHANNEL_LABELS
from app.models.stats import StatCell, StatRefresh
from app.services.reference.registry import HEADCOUNT_BRACKETS
from app.services.statistics import aggregates as agg
from app.services.statistics.indicators import A10_SECTIONS, TAKEN_IN_CHARGE_DAYS, UNKNOWN_KEY

SMALL = 5
SMALL_TEXT = "moins de 5"
DEFAULT_MONTHS = 6
MAX_MONTHS = 60
LICENCE = "Licence Ouverte / Open Licence version 2.0 (Etalab)"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
MONTH_NAMES = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def month_label(month: date) -> str:
    """« novembre 2026 »."""
    return f"{MONTH_NAMES[month.month - 1]} {month.year}"


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def months_between(start: date, end: date) -> list[date]:
    count = (end.year - start.year) * 12 + end.month - start.month
    return [add_months(start, i) for i in range(count + 1)]


def current_month() -> date:
    today = in_paris(utcnow())
    return date(today.year, today.month, 1)


# ---------------------------------------------------------------- the filters


@dataclass
class StatsFilters:
    start: date
    end: date
    region: Region | None = None
    theme: Theme | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return self.region is not None or self.theme is not None

    @property
    def months(self) -> list[date]:
        return months_between(self.start, self.end)

    def args(self) -> dict[str, str]:
        """The query string that reproduces this view (shareable URLs, the CSV and JSON links)."""
        values = {"debut": self.start.strftime("%Y-%m"), "fin": self.end.strftime("%Y-%m")}
        if self.region is not None:
            values["region"] = self.region.code
        if self.theme is not None:
            values["theme"] = self.theme.slug
        return values

    def describe(self) -> str:
        parts = [f"de {month_label(self.start)} à {month_label(self.end)}"]
        parts.append(f"région {self.region.name}" if self.region else "toute la France")
        if self.theme is not None:
            parts.append(f"thème « {self.theme.label} »")
        return ", ".join(parts)


def _parse_month(text: str, name: str, errors: list[str]) -> date | None:
    found = _MONTH.match((text or "").strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or not 2000 <= int(found.group(1)) <= 2100:
        errors.append(f"{name} : mois illisible « {text[:20]} » (attendu : AAAA-MM, par exemple 2026-06).")
        return None
    return date(int(found.group(1)), int(found.group(2)), 1)


def parse_filters(args) -> StatsFilters:
    """The page's filters from its query string; a wrong value is reported (French) and replaced
    by its default, so the page always shows figures."""
    errors: list[str] = []
    end = add_months(current_month(), -1)
    start = add_months(end, -(DEFAULT_MONTHS - 1))
    if args.get("fin"):
        end = _parse_month(args["fin"], "Fin", errors) or end
    if args.get("debut"):
        start = _parse_month(args["debut"], "Début", errors) or add_months(end, -(DEFAULT_MONTHS - 1))
    if start > end:
        errors.append("Le mois de début est après le mois de fin : ils ont été échangés.")
        start, end = end, start
    if len(months_between(start, end)) > MAX_MONTHS:
        errors.append(f"Période limitée à {MAX_MONTHS} mois : le début a été rapproché.")
        start = add_months(end, -(MAX_MONTHS - 1))
    filters = StatsFilters(start=start, end=end, errors=errors)
    code = (args.get("region") or "").strip()
    if code:
        filters.region = db.session.get(Region, code[:3])
        if filters.region is None:
            errors.append(f"Région inconnue : « {code[:20]} » ; toutes les régions sont affichées.")
    slug = (args.get("theme") or "").strip()
    if slug:
        filters.theme = db.session.scalar(select(Theme).where(Theme.slug == slug[:80]))
        if filters.theme is None:
            errors.append(f"Thème inconnu : « {slug[:40]} » ; tous les thèmes sont affichés.")
    return filters


# ---------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Point:
    month: date
    value: float | None  # None: nothing to show (masked, or no denominator)
    text: str  # as the page and the CSV write it


@dataclass
class Series:
    key: str  # the CSV's « indicateur »
    title: str
    definition: str
    unit: str  # "count" or "share"
    points: list[Point] = field(default_factory=list)
    # How a point's date reads in sentences and tables (months by default; weeks on the staff home).
    labeller: Any = None
    axis_format: str = "%m/%y"

    def label(self, day: date) -> str:
        return (self.labeller or month_label)(day)

    @property
    def shown(self) -> list[Point]:
        return [p for p in self.points if p.value is not None]

    def summary(self) -> str:
        """One sentence a screen reader reads instead of the chart."""
        shown = self.shown
        if not shown:
            return f"{self.title} : aucune valeur à afficher sur la période."
        low = min(shown, key=lambda p: p.value)
        high = max(shown, key=lambda p: p.value)
        last = self.points[-1]
        label = self.label
        return (
            f"{self.title}, de {label(self.points[0].month)} à {label(last.month)} : "
            f"au plus bas {low.text} ({label(low.month)}), au plus haut {high.text} ({label(high.month)}) ; "
            f"{last.text} ({label(last.month)})."
        )


@dataclass
class Breakdown:
    """A count split by category over the period (needs by theme, companies by bracket…)."""

    key: str
    title: str
    definition: str
    rows: list[tuple[str, str, Point]] = field(default_factory=list)  # (category key, label, total)
    monthly: dict[str, list[Point]] = field(default_factory=dict)  # category key → points (CSV)

    def summary(self) -> str:
        shown = [(label, point) for _key, label, point in self.rows if point.value]
        if not shown:
            return f"{self.title} : aucune valeur à afficher sur la période."
        label, point = max(shown, key=lambda item: item[1].value)
        return f"{self.title} : la catégorie la plus nombreuse est « {label} » ({point.text})."


@dataclass
class StatsPage:
    filters: StatsFilters
    headline: Series
    helped_since_start: Point
    series: list[Series]
    breakdowns: list[Breakdown]
    refreshed: StatRefresh | None

    def csv_rows(self) -> list[tuple[str, str, str]]:
        """``(indicateur, mois, valeur)``: counts as integers, shares as percentages with one
        decimal, « moins de 5 » where the page says so, empty where there is nothing to divide."""
        rows = [
            (series.key, p.month.strftime("%Y-%m"), _csv_value(p, series.unit))
            for series in [self.headline, *self.series]
            for p in series.points
        ]
        for breakdown in self.breakdowns:
            for category, points in breakdown.monthly.items():
                rows += [
                    (f"{breakdown.key}:{category}", p.month.strftime("%Y-%m"), _csv_value(p, "count")) for p in points
                ]
        return rows


def _sums(filters: StatsFilters, indicators: list[str], start: date, end: date) -> dict[tuple, int]:
    """``(indicator, key, month) → summed value`` over the filter's région and theme."""
    stmt = (
        select(StatCell.indicator, StatCell.key, StatCell.month, func.sum(StatCell.value))
        .where(StatCell.indicator.in_(indicators), StatCell.month >= start, StatCell.month <= end)
        .group_by(StatCell.indicator, StatCell.key, StatCell.month)
    )
    if filters.region is not None:
        stmt = stmt.where(StatCell.region_code == filters.region.code)
    if filters.theme is not None:
        stmt = stmt.where(StatCell.theme_id == filters.theme.id)
    return {(row[0], row[1], row[2]): int(row[3] or 0) for row in db.session.execute(stmt)}


def count_point(month: date, value: int, filtered: bool) -> Point:
    if filtered and 0 < value < SMALL:
        return Point(month, None, SMALL_TEXT)
    return Point(month, float(value), f"{value:,}".replace(",", "\u202f"))


def share_point(month: date, numerator: int, denominator: int, filtered: bool) -> Point:
    if filtered and (0 < numerator < SMALL or 0 < denominator < SMALL):
        return Point(month, None, SMALL_TEXT)
    if denominator == 0:
        return Point(month, None, "")
    share = round(100 * numerator / denominator, 1)
    return Point(month, share, f"{share:.1f}".replace(".", ",") + " %")


def _csv_value(point: Point, unit: str) -> str:
    if point.value is None:
        return point.text
    return f"{point.value:.1f}" if unit == "share" else str(int(point.value))


SHARES = (
    (
        "part_transmises",
        "Part des demandes transmises à des experts",
        agg.TRANSMITTED,
        agg.REQUESTS,
        "Demandes du mois envoyées à au moins un expert, sur les demandes reçues ce mois-là.",
    ),
    (
        "part_echange",
        "Part des besoins avec un échange avec un expert",
        agg.EXCHANGES,
        agg.NEEDS,
        "Besoins du mois qu'un expert a clôturés « aide proposée » ou « pas d'aide disponible », sur les besoins "
        "transmis ce mois-là.",
    ),
    (
        "part_aide_proposee",
        "Part des besoins clôturés avec une aide proposée",
        agg.HELPED,
        agg.NEEDS,
        "Besoins du mois qu'un expert a clôturés « aide proposée », sur les besoins transmis ce mois-là.",
    ),
    (
        "part_prise_en_charge_5j",
        f"Part des échanges pris en charge en {TAKEN_IN_CHARGE_DAYS} jours",
        agg.QUICK,
        agg.EXCHANGES,
        f"Parmi les besoins du mois ayant eu un échange, ceux dont la première prise en charge est venue au plus "
        f"{TAKEN_IN_CHARGE_DAYS} jours après l'envoi aux experts.",
    ),
)


def stats_page(filters: StatsFilters) -> StatsPage:
    """Every figure of the page for ``filters``, in three queries on the aggregates."""
    months = filters.months
    filtered = filters.filtered
    sums = _sums(
        filters,
        [
            agg.REQUESTS,
            agg.TRANSMITTED,
            agg.NEEDS,
            agg.EXCHANGES,
            agg.HELPED,
            agg.QUICK,
            agg.BY_HEADCOUNT,
            agg.BY_SECTION,
            agg.BY_CHANNEL,
        ],
        filters.start,
        filters.end,
    )

    def value(indicator: str, month: date, key: str = "") -> int:
        return sums.get((indicator, key, month), 0)

    requests = Series(
        "demandes_recues",
        "Demandes reçues",
        "Demandes déposées sur le service dans le mois (formulaire public), quelle qu'en soit la suite.",
        "count",
        [count_point(m, value(agg.REQUESTS, m), filtered) for m in months],
    )
    series = [requests]
    for key, title, numerator, denominator, definition in SHARES:
        points = [share_point(m, value(numerator, m), value(denominator, m), filtered) for m in months]
        series.append(Series(key, title, definition, "share", points))

    # The headline: needs closed with help proposed, by month of the closing, over 12 months.
    last = current_month()
    first = add_months(last, -11)
    helped = _sums(filters, [agg.HELPED_CLOSED], date(2000, 1, 1), last)
    headline = Series(
        "aides_proposees",
        "Besoins clôturés avec une aide proposée",
        "Besoins qu'un expert a clôturés « aide proposée », comptés le mois de la clôture.",
        "count",
        [count_point(m, helped.get((agg.HELPED_CLOSED, "", m), 0), filtered) for m in months_between(first, last)],
    )
    since_start = count_point(last, sum(helped.values()), filtered)

    themes = {t.id: t for t in db.session.scalars(select(Theme).order_by(Theme.position, Theme.id))}
    by_theme = _by_theme(filters, months, themes, filtered)
    breakdowns = [
        by_theme,
        _breakdown(
            "entreprises_effectif",
            "Entreprises selon leur effectif",
            "Entreprises ayant déposé un besoin dans le mois, selon la tranche d'effectif salarié du registre "
            "(une entreprise compte une fois par mois et par thème).",
            [(code, label) for code, (label, _low, _high) in HEADCOUNT_BRACKETS.items() if code != UNKNOWN_KEY]
            + [(UNKNOWN_KEY, "Effectif inconnu")],
            agg.BY_HEADCOUNT,
            months,
            value,
            filtered,
        ),
        _breakdown(
            "entreprises_section",
            "Entreprises selon leur secteur d'activité",
            "Entreprises ayant déposé un besoin dans le mois, selon la section d'activité (NAF en 10 postes) de leur "
            "activité principale.",
            [(key, label) for key, (label, _divisions) in A10_SECTIONS.items()] + [(UNKNOWN_KEY, "Activité inconnue")],
            agg.BY_SECTION,
            months,
            value,
            filtered,
        ),
        _breakdown(
            "demandes_provenance",
            "Demandes selon leur provenance",
            "Demandes déposées dans le mois, selon le canal : le site, la page ou le formulaire intégré d'un "
            "partenaire, l'API d'un partenaire, ou une saisie par un conseiller pour l'entreprise.",
            list(CHANNEL_LABELS.items()),
            agg.BY_CHANNEL,
            months,
            value,
            filtered,
        ),
    ]
    refreshed = db.session.scalar(select(StatRefresh).order_by(StatRefresh.id.desc()).limit(1))
    return StatsPage(filters, headline, since_start, series, breakdowns, refreshed)


def _breakdown(key, title, definition, categories, indicator, months, value, filtered) -> Breakdown:
    breakdown = Breakdown(key, title, definition)
    for category, label in categories:
        monthly = [value(indicator, m, category) for m in months]
        if not any(monthly):
            continue
        breakdown.monthly[category] = [count_point(m, v, filtered) for m, v in zip(months, monthly, strict=True)]
        breakdown.rows.append((category, label, count_point(months[-1], sum(monthly), filtered)))
    return breakdown


def _by_theme(filters: StatsFilters, months: list[date], themes: dict, filtered: bool) -> Breakdown:
    stmt = (
        select(StatCell.theme_id, StatCell.month, func.sum(StatCell.value))
        .where(StatCell.indicator == agg.NEEDS, StatCell.month >= filters.start, StatCell.month <= filters.end)
        .group_by(StatCell.theme_id, StatCell.month)
    )
    if filters.region is not None:
        stmt = stmt.where(StatCell.region_code == filters.region.code)
    if filters.theme is not None:
        stmt = stmt.where(StatCell.theme_id == filters.theme.id)
    per: dict[int, dict[date, int]] = defaultdict(dict)
    for theme_id, month, total in db.session.execute(stmt):
        per[theme_id][month] = int(total or 0)
    breakdown = Breakdown(
        "besoins_theme",
        "Besoins par thème",
        "Besoins transmis dans le mois, selon le thème du sujet choisi par l'entreprise.",
    )
    for theme_id, theme in themes.items():
        if theme_id not in per:
            continue
        monthly = [per[theme_id].get(m, 0) for m in months]
        breakdown.monthly[theme.slug] = [count_point(m, v, filtered) for m, v in zip(months, monthly, strict=True)]
        breakdown.rows.append((theme.slug, theme.label, count_point(months[-1], sum(monthly), filtered)))
    return breakdown
