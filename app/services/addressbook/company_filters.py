"""The rule of a routing filter (« filtre de mise en relation ») over a company's facts.

A filter belongs to an institution, an antenne or an expert (issue 14); this module is its rule
alone, in plain Python, so that the routing query, the simulator's explanation and the oracle
test read one definition. Each criterion is optional; a filter accepts a company when every
criterion it sets accepts it. A criterion that needs a fact the registry did not give neither
accepts nor refuses: the decision is « non évalué », and the caller keeps the expert and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from app.services.reference.registry import HEADCOUNT_BRACKETS

# NAF sections (A10's letters): the divisions each covers, so « C » reads as « 10 » to « 33 ».
NAF_SECTIONS: dict[str, range] = {
    "A": range(1, 4),
    "B": range(5, 10),
    "C": range(10, 34),
    "D": range(35, 36),
    "E": range(36, 40),
    "F": range(41, 44),
    "G": range(45, 48),
    "H": range(49, 54),
    "I": range(55, 57),
    "J": range(58, 64),
    "K": range(64, 67),
    "L": range(68, 69),
    "M": range(69, 76),
    "N": range(77, 83),
    "O": range(84, 85),
    "P": range(85, 86),
    "Q": range(86, 89),
    "R": range(90, 94),
    "S": range(94, 97),
    "T": range(97, 99),
    "U": range(99, 100),
}


# The natures of activity a filter may accept (the registry's words, lower case).
ACTIVITY_NATURES = ("artisanale", "commerciale", "libérale", "agricole", "industrielle", "civile")


class Verdict(StrEnum):
    ACCEPTED = "accepte"
    REFUSED = "refuse"
    UNKNOWN = "non-evalue"


@dataclass(frozen=True)
class CompanyFacts:
    """What a filter reads of a company (None: the registry did not say)."""

    commune_code: str
    naf_code: str | None = None
    headcount_code: str | None = None
    created_on: date | None = None
    legal_form: str | None = None
    activity_nature: str | None = None


@dataclass(frozen=True)
class FilterCriteria:
    min_years: int | None = None
    max_years: int | None = None
    min_headcount: int | None = None
    max_headcount: int | None = None
    naf_accepted: tuple[str, ...] = ()
    naf_excluded: tuple[str, ...] = ()
    legal_forms_accepted: tuple[str, ...] = ()
    legal_forms_excluded: tuple[str, ...] = ()
    activities_accepted: tuple[str, ...] = ()
    excluded_communes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    # Why, in French, one line per criterion that refused or could not be evaluated.
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _naf_digits(code: str) -> str:
    return code.replace(".", "").strip().upper()


def naf_matches(code: str, pattern: str) -> bool:
    """``47`` covers ``47.11Z``, ``47.1`` covers ``47.11Z`` too, a section letter covers its
    divisions (``G`` covers ``47.11Z``)."""
    pattern = pattern.strip().upper()
    if len(pattern) == 1 and pattern.isalpha():
        division = _naf_digits(code)[:2]
        return division.isdigit() and int(division) in NAF_SECTIONS.get(pattern, range(0))
    return _naf_digits(code).startswith(_naf_digits(pattern))


def years_between(start: date, today: date) -> int:
    """Whole years of existence on ``today``."""
    years = today.year - start.year
    return years - 1 if (today.month, today.day) < (start.month, start.day) else years


def evaluate(criteria: FilterCriteria, facts: CompanyFacts, *, today: date) -> Decision:
    """Whether the filter accepts the company: every criterion it sets must, and a criterion
    whose fact is unknown makes the whole decision « non évalué » unless another refuses."""
    refused: list[str] = []
    unknown: list[str] = []

    if facts.commune_code in criteria.excluded_communes:
        refused.append(f"commune {facts.commune_code} exclue")

    if criteria.min_years is not None or criteria.max_years is not None:
        if facts.created_on is None:
            unknown.append("date de création inconnue")
        else:
            age = years_between(facts.created_on, today)
            if criteria.min_years is not None and age < criteria.min_years:
                refused.append(f"{age} an(s) d'existence, moins de {criteria.min_years}")
            if criteria.max_years is not None and age > criteria.max_years:
                refused.append(f"{age} an(s) d'existence, plus de {criteria.max_years}")

    if criteria.min_headcount is not None or criteria.max_headcount is not None:
        label, low, high = HEADCOUNT_BRACKETS.get(facts.headcount_code or "NN", ("effectif inconnu", None, None))
        if low is None:
            unknown.append("effectif inconnu")
        else:
            if criteria.min_headcount is not None and low < criteria.min_headcount:
                refused.append(f"effectif {label}, moins de {criteria.min_headcount}")
            if criteria.max_headcount is not None and (high is None or high > criteria.max_headcount):
                refused.append(f"effectif {label}, plus de {criteria.max_headcount}")

    if criteria.naf_accepted or criteria.naf_excluded:
        if not facts.naf_code:
            unknown.append("activité (NAF) inconnue")
        else:
            if criteria.naf_accepted and not any(naf_matches(facts.naf_code, p) for p in criteria.naf_accepted):
                refused.append(f"activité {facts.naf_code} hors des activités acceptées")
            if any(naf_matches(facts.naf_code, p) for p in criteria.naf_excluded):
                refused.append(f"activité {facts.naf_code} exclue")

    if criteria.legal_forms_accepted or criteria.legal_forms_excluded:
        if not facts.legal_form:
            unknown.append("forme juridique inconnue")
        else:
            form = facts.legal_form.strip()
            if criteria.legal_forms_accepted and not any(form.startswith(p) for p in criteria.legal_forms_accepted):
                refused.append(f"forme juridique {form} hors des formes acceptées")
            if any(form.startswith(p) for p in criteria.legal_forms_excluded):
                refused.append(f"forme juridique {form} exclue")

    if criteria.activities_accepted:
        if not facts.activity_nature:
            unknown.append("nature d'activité inconnue")
        elif facts.activity_nature not in criteria.activities_accepted:
            refused.append(f"activité {facts.activity_nature}, non acceptée")

    if refused:
        return Decision(Verdict.REFUSED, tuple(refused))
    if unknown:
        return Decision(Verdict.UNKNOWN, tuple(unknown))
    return Decision(Verdict.ACCEPTED)
