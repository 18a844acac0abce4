"""The oracle of issue 14: over generated address books, filters and companies (hypothesis), the
SQL routing keeps, excludes and marks exactly the experts a plain-Python reading of the whole
rule does — zones (own zone over the antenne's, national flags), offers, experts' subjects,
deleted rows, and the filters of institutions, antennes and experts limited or not to subjects.

Each example is built in the test's transaction (flushed, never committed) and rolled back.
"""

from __future__ import annotations

import itertools
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import (
    Antenne,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    RoutingFilter,
    RoutingFilterSubject,
    Zone,
)
from app.models.base import utcnow
from app.services.addressbook import routing
from app.services.addressbook.company_filters import CompanyFacts, Verdict, evaluate
from app.services.addressbook.routing_filters import criteria_of
from tests.factories import subject

LYON = "69123"
LYON_REFERENCES = {"commune:69123", "epci:200046977", "departement:69", "region:84"}
ZONES = [None, None, "commune:69123", "epci:200046977", "departement:69", "region:84", "departement:13", "national"]
SUBJECTS = ("recrutement", "formation")
_serial = itertools.count()

criteria = st.fixed_dictionaries(
    {
        "min_years": st.sampled_from([None, None, 5]),
        "max_years": st.sampled_from([None, None, 10]),
        "min_headcount": st.sampled_from([None, None, 10, 50]),
        "max_headcount": st.sampled_from([None, None, 19, 49]),
        "naf_accepted": st.sampled_from(["", "", "47", "C", "43.21A"]),
        "naf_excluded": st.sampled_from(["", "", "56"]),
        "legal_forms_accepted": st.sampled_from(["", "", "57"]),
        "legal_forms_excluded": st.sampled_from(["", "", "1000"]),
        "activities_accepted": st.sampled_from(["", "", "artisanale", "commerciale industrielle"]),
        "excluded_communes": st.sampled_from(["", "", "69123"]),
    }
)
company = st.builds(
    CompanyFacts,
    commune_code=st.just(LYON),
    naf_code=st.sampled_from([None, "47.11Z", "43.21A", "25.62B", "56.10A"]),
    headcount_code=st.sampled_from([None, "00", "03", "11", "21"]),
    created_on=st.sampled_from([None, date(2001, 3, 1), date(2019, 6, 1), date(2025, 1, 15)]),
    legal_form=st.sampled_from([None, "5710", "1000", "5499"]),
    activity_nature=st.sampled_from([None, "artisanale", "commerciale"]),
)


def _zone(owner, reference):
    if reference == "national":
        owner.national = True
    elif reference:
        kind, code = reference.split(":")
        owner.zones.append(Zone(kind=kind, code=code))


def _build(db, data):
    """An address book drawn from ``data``, with the plain facts the oracle reads."""
    subjects = {slug: subject(slug) for slug in SUBJECTS}
    book = []
    for _i in range(data.draw(st.integers(1, 3))):
        n = next(_serial)
        institution = Institution(name=f"Institution oracle {n}", slug=f"institution-oracle-{n}")
        institution.deleted_at = utcnow() if data.draw(st.integers(0, 9)) == 0 else None
        db.session.add(institution)
        offered = data.draw(st.sets(st.sampled_from(SUBJECTS)))
        offers = {slug: InstitutionSubject(institution=institution, subject=subjects[slug]) for slug in offered}
        db.session.add_all(offers.values())
        for _j in range(data.draw(st.integers(1, 2))):
            antenne = Antenne(institution=institution, name=f"Antenne oracle {next(_serial)}")
            antenne.deleted_at = utcnow() if data.draw(st.integers(0, 9)) == 0 else None
            _zone(antenne, data.draw(st.sampled_from(ZONES)))
            db.session.add(antenne)
            for _k in range(data.draw(st.integers(1, 3))):
                expert = Expert(antenne=antenne, full_name=f"Expert {next(_serial)}", email=f"e{next(_serial)}@ex.fr")
                expert.deleted_at = utcnow() if data.draw(st.integers(0, 9)) == 0 else None
                _zone(expert, data.draw(st.sampled_from([None, None, None, *ZONES])))
                taken = data.draw(st.sets(st.sampled_from(sorted(offered)))) if offered else set()
                for slug in taken:
                    expert.subjects.append(ExpertSubject(institution_subject=offers[slug]))
                db.session.add(expert)
                book.append((institution, antenne, expert, taken))
    db.session.flush()

    filters = []
    holders = [h for row in book for h in row[:3]]
    for _f in range(data.draw(st.integers(0, 4))):
        holder = data.draw(st.sampled_from(holders))
        values = data.draw(criteria)
        if values["min_headcount"] is not None and values["max_headcount"] is not None:
            values["max_headcount"] = max(values["max_headcount"], values["min_headcount"])
        limited = data.draw(st.sets(st.sampled_from(SUBJECTS)))
        kind = {Institution: "institution", Antenne: "antenne", Expert: "expert"}[type(holder)]
        found = RoutingFilter(**{kind: holder}, **values)
        found.subject_links = [RoutingFilterSubject(subject=subjects[slug]) for slug in limited]
        db.session.add(found)
        filters.append((holder, limited, found))
    db.session.flush()
    return book, filters


def _in_territory(owner) -> bool:
    return owner.national or any(z.reference in LYON_REFERENCES for z in owner.zones)


def _oracle(book, filters, facts, slug, today):
    """The rule, read plainly: who is a candidate, and each candidate's verdict."""
    expected = {}
    for institution, antenne, expert, taken in book:
        if institution.deleted_at or antenne.deleted_at or expert.deleted_at or slug not in taken:
            continue
        owner = expert if (expert.national or expert.zones) else antenne
        if not _in_territory(owner):
            continue
        decisions = [
            evaluate(criteria_of(found), facts, today=today).verdict
            for holder, limited, found in filters
            if holder in (institution, antenne, expert) and (not limited or slug in limited)
        ]
        if Verdict.REFUSED in decisions:
            expected[expert.id] = Verdict.REFUSED
        elif Verdict.UNKNOWN in decisions:
            expected[expert.id] = Verdict.UNKNOWN
        else:
            expected[expert.id] = Verdict.ACCEPTED
    return expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), facts=company, slug=st.sampled_from(SUBJECTS))
def test_sql_routing_agrees_with_the_plain_reading(db, data, facts, slug):
    try:
        book, filters = _build(db, data)
        kept, excluded = routing.route_company(subject(slug).id, LYON, facts)
        got = {found.expert_id: found.verdict for found in [*kept, *excluded]}
        today = routing.in_paris(routing.utcnow()).date()
        assert got == _oracle(book, filters, facts, slug, today)
        assert all(found.verdict != Verdict.REFUSED for found in kept)
        assert all(found.verdict == Verdict.REFUSED for found in excluded)
    finally:
        db.session.rollback()
