"""Filters and expected answers applied to the experts the zone rule found (issue 14).

Routing first finds the candidates by subject × territory (``routing``); this module then
reads, in one query each, the filters of their institutions, antennes and themselves that
apply to the subject, and their institutions' expected answers, and evaluates them with the
one rule of ``company_filters``. Every evaluation is kept as a :class:`Check`, so the simulator,
``flask routing explain``, the desk and the need page say *why* an expert was kept, excluded,
or kept unevaluated — none of it is silent.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import InstitutionSubject, OfferExpectation, RoutingFilter
from app.models.filters import CODE_LIST_COLUMNS, NUMBER_COLUMNS
from app.services.addressbook.company_filters import CompanyFacts, Decision, FilterCriteria, Verdict, evaluate
from app.services.errors import ServiceError
from app.services.reference.registry import HEADCOUNT_BRACKETS, lookup_company

VERDICT_WORDS = {Verdict.ACCEPTED: "accepté", Verdict.REFUSED: "refusé", Verdict.UNKNOWN: "non évalué"}


@dataclass(frozen=True)
class Check:
    """One filter, or one institution's expected answers, evaluated for one expert."""

    source: str  # « filtre #3 de l'institution CMA Auvergne-Rhône-Alpes »
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    filter_id: int | None = None

    @property
    def text(self) -> str:
        words = f"{self.source} : {VERDICT_WORDS[self.verdict]}"
        return f"{words} ({' ; '.join(self.reasons)})" if self.reasons else words

    def as_dict(self) -> dict[str, Any]:
        return {
            "filter_id": self.filter_id,
            "source": self.source,
            "verdict": str(self.verdict),
            "reasons": list(self.reasons),
        }


def overall(checks: Iterable[Check]) -> Verdict:
    """A refusal wins; then an unevaluated check; an expert without checks is accepted."""
    verdicts = {check.verdict for check in checks}
    if Verdict.REFUSED in verdicts:
        return Verdict.REFUSED
    if Verdict.UNKNOWN in verdicts:
        return Verdict.UNKNOWN
    return Verdict.ACCEPTED


# ---------------------------------------------------------------- company facts


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def facts_from_registry(insee_code: str, registry: Mapping[str, Any] | None) -> CompanyFacts:
    """A request's company as filters read it: its commune, and what the registry said at
    submission (``Solicitation.registry_data``); nothing known when the registry did not answer."""
    registry = registry or {}
    headcount = registry.get("headcount_code") or None
    return CompanyFacts(
        commune_code=insee_code,
        naf_code=registry.get("naf_code") or None,
        headcount_code=headcount if headcount != "NN" else None,
        created_on=_date(registry.get("created_on")),
        legal_form=registry.get("legal_form") or None,
        activity_nature=registry.get("activity_nature") or None,
    )


def company_for_explain(
    insee_code: str,
    *,
    siret: str | None = None,
    naf: str | None = None,
    headcount_code: str | None = None,
    created: str | None = None,
    legal_form: str | None = None,
    activity: str | None = None,
) -> CompanyFacts | None:
    """A company as the simulator and ``flask routing explain`` describe it: the registry's facts
    of ``siret`` (when given), each replaced by the value typed. None when nothing was given
    (then only the commune is known). ServiceError (French) for a value that cannot be one."""
    registry: dict[str, Any] = {}
    siret = (siret or "").replace(" ", "")
    if siret:
        if not (siret.isdigit() and len(siret) == 14):
            raise ServiceError(f"SIRET illisible : « {siret} » (14 chiffres attendus).")
        info = lookup_company(siret)
        if info is None:
            raise ServiceError(f"Le registre ne connaît pas le SIRET {siret}.")
        registry = dataclasses.asdict(info)
    if naf:
        naf = naf.strip().upper()
        if not re.fullmatch(r"\d{2}\.?\d{2}[A-Z]", naf):
            raise ServiceError(f"Code NAF illisible : « {naf} » (par exemple 47.11Z).")
        registry["naf_code"] = naf if "." in naf else f"{naf[:2]}.{naf[2:]}"
    if headcount_code:
        if headcount_code.strip().upper() not in HEADCOUNT_BRACKETS:
            raise ServiceError(
                f"Tranche d'effectif inconnue : « {headcount_code} » (codes INSEE : {', '.join(HEADCOUNT_BRACKETS)})."
            )
        registry["headcount_code"] = headcount_code.strip().upper()
    if created:
        if _date(created.strip()) is None or len(created.strip()) != 10:
            raise ServiceError(f"Date de création illisible : « {created} » (AAAA-MM-JJ attendu).")
        registry["created_on"] = created.strip()
    if legal_form:
        if not re.fullmatch(r"\d{4}", legal_form.strip()):
            raise ServiceError(f"Catégorie juridique illisible : « {legal_form} » (4 chiffres, par exemple 5499).")
        registry["legal_form"] = legal_form.strip()
    if activity:
        registry["activity_nature"] = activity.strip().lower()
    if not registry:
        return None
    return facts_from_registry(insee_code, registry)


def facts_of_request(solicitation: Any) -> CompanyFacts:
    """The company of a request (``Solicitation``), as routing's filters read it."""
    return facts_from_registry(solicitation.insee_code, solicitation.registry_data)


# ---------------------------------------------------------------- filters


def codes(text: str | None) -> tuple[str, ...]:
    """``"47 56.10A"`` → ``("47", "56.10A")``: a code list as stored and typed."""
    return tuple(dict.fromkeys((text or "").split()))


def criteria_of(row: Any) -> FilterCriteria:
    """A stored filter (a model or a row with its columns) as the rule reads it."""
    values: dict[str, Any] = {name: getattr(row, name) for name in NUMBER_COLUMNS}
    values |= {name: codes(getattr(row, name)) for name in CODE_LIST_COLUMNS}
    values["activities_accepted"] = tuple(code.lower() for code in values["activities_accepted"])
    return FilterCriteria(**values)


# A filter's columns as routing reads them (the routing query carries them, one row per filter).
FILTER_COLUMNS = [getattr(RoutingFilter, name) for name in ("id", "institution_id", "antenne_id", "expert_id")]
FILTER_COLUMNS += [getattr(RoutingFilter, name) for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)]


@dataclass(frozen=True)
class FilterRow:
    """One stored filter as the routing query returns it (``FILTER_COLUMNS``, in order)."""

    id: int
    institution_id: int | None
    antenne_id: int | None
    expert_id: int | None
    min_years: int | None
    max_years: int | None
    min_headcount: int | None
    max_headcount: int | None
    naf_accepted: str
    naf_excluded: str
    legal_forms_accepted: str
    legal_forms_excluded: str
    activities_accepted: str
    excluded_communes: str


# ---------------------------------------------------------------- expected answers


def answers_decision(expectations: list[Mapping[str, str]], answers: Mapping[str, str] | None) -> Decision:
    """Whether the answers match one of an institution's combinations (none declared: all taken).

    A combination names the answers it needs; a question it does not name takes any answer. A
    combination needing an answer the request does not carry (asked before the question
    existed, or filed without it) can neither take nor refuse: « non évalué »."""
    if not expectations:
        return Decision(Verdict.ACCEPTED)
    answers = answers or {}
    missing: set[str] = set()
    for combination in expectations:
        unanswered = [key for key in combination if key not in answers]
        if any(answers[key] != value for key, value in combination.items() if key in answers):
            continue
        if not unanswered:
            return Decision(Verdict.ACCEPTED)
        missing.update(unanswered)
    if missing:
        return Decision(Verdict.UNKNOWN, tuple(f"réponse inconnue à la question « {key} »" for key in sorted(missing)))
    given = ", ".join(f"{key} = {value}" for key, value in sorted(answers.items())) or "aucune réponse"
    return Decision(Verdict.REFUSED, (f"réponses ({given}) hors des combinaisons prises",))


def _expectations(subject_id: int, institution_ids: set[int]) -> dict[int, list[dict]]:
    stmt = (
        select(InstitutionSubject.institution_id, OfferExpectation.answers)
        .join(OfferExpectation, OfferExpectation.institution_subject_id == InstitutionSubject.id)
        .where(InstitutionSubject.subject_id == subject_id, InstitutionSubject.institution_id.in_(institution_ids))
        .order_by(OfferExpectation.id)
    )
    found: dict[int, list[dict]] = defaultdict(list)
    for institution_id, answers in db.session.execute(stmt):
        found[institution_id].append(dict(answers or {}))
    return found


# ---------------------------------------------------------------- everything for the candidates


def checks_for(
    candidates: list[Any],
    filters: Mapping[int, Mapping[int, FilterRow]],
    subject_id: int,
    expecting: list[Any],
    company: CompanyFacts,
    answers: Mapping[str, str] | None,
    *,
    today: date,
) -> dict[int, tuple[Check, ...]]:
    """The checks of each candidate expert (by id): its institution's, its antenne's and its
    own filters that apply to the subject (``filters``: by expert, as the routing query found
    them), then its institution's expected answers (``expecting``: the candidates whose
    institution declared some; one query when there are any)."""
    institutions = {c.institution_id: c.institution for c in candidates}
    antennes = {c.antenne_id: c.antenne for c in candidates}
    experts = {c.expert_id: c.expert for c in candidates}
    evaluated: dict[int, Check] = {}
    by_institution: dict[int, list[Check]] = defaultdict(list)
    own: dict[int, list[Check]] = defaultdict(list)
    for expert_id, held in filters.items():
        for row in held.values():
            check = evaluated.get(row.id)
            if check is None:
                decision = evaluate(criteria_of(row), company, today=today)
                if row.institution_id is not None:
                    source = f"filtre #{row.id} de l'institution {institutions[row.institution_id]}"
                elif row.antenne_id is not None:
                    source = f"filtre #{row.id} de l'antenne {antennes[row.antenne_id]}"
                else:
                    source = f"filtre #{row.id} de l'expert {experts[row.expert_id]}"
                check = evaluated[row.id] = Check(source, decision.verdict, decision.reasons, row.id)
            own[expert_id].append(check)
    # The institution's filters first, then the antenne's, then the expert's own.
    rank = {
        row.id: (0 if row.institution_id else 1 if row.antenne_id else 2)
        for held in filters.values()
        for row in held.values()
    }
    for checks in own.values():
        checks.sort(key=lambda check: (rank[check.filter_id], check.filter_id))
    expected = _expectations(subject_id, {c.institution_id for c in expecting}) if expecting else {}
    for institution_id, expectations in expected.items():
        decision = answers_decision(expectations, answers)
        source = f"réponses attendues par {institutions[institution_id]}"
        by_institution[institution_id].append(Check(source, decision.verdict, decision.reasons))
    result: dict[int, tuple[Check, ...]] = {}
    for c in candidates:
        checks = (*own.get(c.expert_id, ()), *by_institution.get(c.institution_id, ()))
        if checks:
            result[c.expert_id] = checks
    return result
