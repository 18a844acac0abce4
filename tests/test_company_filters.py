"""Issue 14, the rule of a routing filter: each criterion at its bounds, prefixes and sections,
unknown facts (« non évalué », never a silent drop or keep), and several criteria together."""

from __future__ import annotations

from datetime import date

import pytest

from app.services.addressbook.company_filters import (
    CompanyFacts,
    FilterCriteria,
    Verdict,
    evaluate,
    naf_matches,
    years_between,
)

TODAY = date(2026, 12, 3)
BAKERY = CompanyFacts(
    commune_code="69123",
    naf_code="10.71C",
    headcount_code="11",  # 10 to 19
    created_on=date(2016, 12, 3),  # ten years today
    legal_form="5499",
    activity_nature="artisanale",
)


def verdict(facts: CompanyFacts = BAKERY, **criteria) -> Verdict:
    return evaluate(FilterCriteria(**criteria), facts, today=TODAY).verdict


def test_no_criterion_accepts_everyone():
    assert verdict() == Verdict.ACCEPTED
    assert verdict(CompanyFacts(commune_code="75056")) == Verdict.ACCEPTED  # nothing known, nothing asked


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"min_years": 10}, Verdict.ACCEPTED),  # ten years today: at the bound
        ({"min_years": 11}, Verdict.REFUSED),
        ({"max_years": 10}, Verdict.ACCEPTED),
        ({"max_years": 9}, Verdict.REFUSED),
        # Headcount compares the bracket's bounds: 10–19 is « at least 10 », not « at least 11 ».
        ({"min_headcount": 10}, Verdict.ACCEPTED),
        ({"min_headcount": 11}, Verdict.REFUSED),
        ({"max_headcount": 19}, Verdict.ACCEPTED),
        ({"max_headcount": 18}, Verdict.REFUSED),
        ({"naf_accepted": ("10",)}, Verdict.ACCEPTED),
        ({"naf_accepted": ("10.71",)}, Verdict.ACCEPTED),
        ({"naf_accepted": ("C",)}, Verdict.ACCEPTED),  # the section of divisions 10–33
        ({"naf_accepted": ("G", "47")}, Verdict.REFUSED),
        ({"naf_excluded": ("10.7",)}, Verdict.REFUSED),
        ({"naf_excluded": ("47",)}, Verdict.ACCEPTED),
        ({"legal_forms_accepted": ("54",)}, Verdict.ACCEPTED),
        ({"legal_forms_accepted": ("57",)}, Verdict.REFUSED),
        ({"legal_forms_excluded": ("5499",)}, Verdict.REFUSED),
        ({"activities_accepted": ("artisanale",)}, Verdict.ACCEPTED),
        ({"activities_accepted": ("commerciale", "libérale")}, Verdict.REFUSED),
        ({"excluded_communes": ("69123",)}, Verdict.REFUSED),
        ({"excluded_communes": ("69266",)}, Verdict.ACCEPTED),
    ],
)
def test_each_criterion_at_its_bounds(criteria, expected):
    assert verdict(**criteria) == expected


def test_the_day_before_an_anniversary_is_one_year_less():
    assert years_between(date(2016, 12, 4), TODAY) == 9
    assert years_between(date(2016, 12, 3), TODAY) == 10
    assert years_between(date(2016, 2, 29), date(2017, 2, 28)) == 0


def test_an_unbounded_bracket_is_above_any_maximum():
    big = CompanyFacts(commune_code="75056", headcount_code="53")  # 10,000 and more
    assert verdict(big, max_headcount=100_000) == Verdict.REFUSED
    assert verdict(big, min_headcount=5000) == Verdict.ACCEPTED


def test_an_unknown_fact_is_not_evaluated_and_says_which():
    unknown = CompanyFacts(commune_code="69123", headcount_code="NN")
    decision = evaluate(
        FilterCriteria(min_headcount=10, activities_accepted=("artisanale",), naf_accepted=("10",)),
        unknown,
        today=TODAY,
    )
    assert decision.verdict == Verdict.UNKNOWN
    assert decision.reasons == ("effectif inconnu", "activité (NAF) inconnue", "nature d'activité inconnue")


def test_a_refusal_wins_over_an_unknown_and_gives_its_reason():
    facts = CompanyFacts(commune_code="69123", naf_code="47.11Z", headcount_code="NN")
    decision = evaluate(FilterCriteria(min_headcount=10, naf_excluded=("47",)), facts, today=TODAY)
    assert decision.verdict == Verdict.REFUSED
    assert decision.reasons == ("activité 47.11Z exclue",)


def test_every_criterion_must_accept():
    decision = evaluate(FilterCriteria(min_years=5, min_headcount=20), BAKERY, today=TODAY)
    assert decision.verdict == Verdict.REFUSED
    assert decision.reasons == ("effectif 10 à 19 salariés, moins de 20",)


@pytest.mark.parametrize(
    ("code", "pattern", "expected"),
    [
        ("47.11Z", "47", True),
        ("47.11Z", "4711", True),
        ("47.11Z", "47.2", False),
        ("47.11Z", "G", True),
        ("47.11Z", "C", False),
        ("01.11Z", "A", True),
        ("99.00Z", "U", True),
        ("47.11Z", "Z", False),
    ],
)
def test_naf_prefixes_and_sections(code, pattern, expected):
    assert naf_matches(code, pattern) is expected
