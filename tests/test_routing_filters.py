"""Issue 14 through its interfaces: filters at each level and limited to subjects, unknown facts
holding an automatic request, the import file (errors, all or nothing, idempotence, the whole
set of each holder), referents' scope, questions and institutions' expected answers, and
``flask routing explain`` with a company."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app import policy
from app.models import AuditEvent, OfferExpectation, RoutingFilter, SubjectQuestion
from app.services.addressbook import routing
from app.services.addressbook.company_filters import CompanyFacts, Verdict
from app.services.addressbook.filters import import_filters
from app.services.errors import ServiceError
from app.services.requests.solicitations import InvalidSolicitation, submit_solicitation
from app.services.transactions import transaction
from tests.factories import (
    AntenneFactory,
    ExpertFactory,
    InstitutionFactory,
    UserFactory,
    covering_expert,
    offer,
    solicitation_input,
    subject,
)
from tests.helpers import post_form

LYON = "69123"
ARTISAN = CompanyFacts(LYON, naf_code="43.21A", headcount_code="03", activity_nature="artisanale")
TRADER = CompanyFacts(LYON, naf_code="47.11Z", headcount_code="11", activity_nature="commerciale")
HEADER = (
    "institution,antenne,expert_email,subjects,min_years,max_years,min_headcount,max_headcount,"
    "naf_accepted,naf_excluded,legal_forms_accepted,legal_forms_excluded,activities_accepted,excluded_communes\n"
)


def _filter(db, holder, subjects=(), **criteria) -> RoutingFilter:
    kind = type(holder).__name__.lower()
    found = RoutingFilter(**{kind: holder}, **criteria)
    from app.services.addressbook.filters import set_filter_subjects

    set_filter_subjects(found, [subject(slug) for slug in subjects])
    db.session.add(found)
    db.session.commit()
    return found


def _decided(company, slug="recrutement"):
    kept, excluded = routing.route_company(subject(slug).id, LYON, company)
    return {f.email: f.verdict for f in kept}, {f.email for f in excluded}


def test_each_level_of_filter_combines(db):
    cma = covering_expert("departement:69")
    cci = covering_expert("departement:69")
    _filter(db, cma.antenne.institution, activities_accepted="artisanale")
    _filter(db, cci.antenne, activities_accepted="commerciale")
    kept, excluded = _decided(ARTISAN)
    assert kept == {cma.email: Verdict.ACCEPTED} and excluded == {cci.email}
    kept, excluded = _decided(TRADER)
    assert kept == {cci.email: Verdict.ACCEPTED} and excluded == {cma.email}
    # An expert's own filter narrows it further, on top of its institution's.
    _filter(db, cma, min_headcount=10)
    assert _decided(ARTISAN) == ({}, {cma.email, cci.email})


def test_a_filter_limited_to_subjects_leaves_the_others_alone(db):
    expert = covering_expert("departement:69")
    offer(expert, "formation")
    _filter(db, expert.antenne.institution, subjects=["formation"], min_headcount=50)
    assert _decided(ARTISAN, "recrutement") == ({expert.email: Verdict.ACCEPTED}, set())
    assert _decided(ARTISAN, "formation") == ({}, {expert.email})


def test_an_unknown_fact_keeps_the_expert_and_holds_the_request(db):
    expert = covering_expert("departement:69")
    _filter(db, expert.antenne.institution, min_years=3)
    kept, excluded = _decided(CompanyFacts(LYON))
    assert kept == {expert.email: Verdict.UNKNOWN} and not excluded
    # The fake registry gives no creation date for this SIRET? It does: make the filter read a
    # fact it leaves out (the legal form is always given, the nature not for software).
    db.session.delete(db.session.scalar(select(RoutingFilter)))
    db.session.commit()
    _filter(db, expert.antenne.institution, activities_accepted="artisanale")
    with transaction():
        # SIREN ending in 3: software, the registry says nothing of its nature.
        held = submit_solicitation(solicitation_input(siret="71234569300014"))
    assert held.status == "in_progress" and held.need is None
    assert any(
        "Filtre non évalué" in note and "nature d'activité inconnue" in note for note in held.qualification_notes
    )
    with transaction():
        sent = submit_solicitation(solicitation_input(siret="51234561200018", email="artisan@example.fr"))
    assert sent.status == "processed" and [m.expert_id for m in sent.need.matches] == [expert.id]


def test_no_filter_no_change(db):
    expert = covering_expert("region:84")
    assert _decided(ARTISAN) == ({expert.email: Verdict.ACCEPTED}, set())


def _csv(*rows: str) -> str:
    return HEADER + "".join(row + "\n" for row in rows)


def test_the_import_checks_every_line_and_writes_nothing_on_error(db):
    institution = InstitutionFactory(name="CMA Test")
    AntenneFactory(institution=institution, name="CMA Rhône")
    report = import_filters(
        _csv(
            "CMA Test,,,,,,,,,,,,artisanale,",
            "Inconnue,,,,,,,,,,,,,",
            "CMA Test,Nulle part,,,,,,,,,,,,",
            "CMA Test,,,sujet-inconnu,,,,,,,,,,",
            "CMA Test,,,,5,2,,,4Z,,ab,,joaillerie,99999",
            "CMA Test,,,,,,,,,,,,,",
        )
    )
    text = "\n".join(report.errors)
    assert "ligne 3 : institution inconnue : « Inconnue »" in text
    assert "ligne 4 : antenne inconnue : « Nulle part »" in text
    assert "ligne 5 : sujet(s) inconnu(s) : sujet-inconnu" in text
    assert "ligne 6 : max_years : années : le maximum est inférieur au minimum" in text
    assert "ligne 6 : naf_accepted : valeur(s) non reconnue(s) : 4Z" in text
    assert "ligne 6 : legal_forms_accepted" in text and "ligne 6 : activities_accepted" in text
    assert "ligne 6 : excluded_communes : commune(s) inconnue(s) : 99999" in text
    assert "ligne 7 : min_years : un filtre sans aucun critère" in text
    too_long = import_filters(
        _csv("CMA Test,,,,,,,,," + " ".join(f"{n:02d}.{m:02d}Z" for n in range(10, 99) for m in range(10, 14)) + ",,,,")
    )
    assert any("naf_excluded : liste trop longue" in error for error in too_long.errors), too_long.errors
    assert db.session.scalar(select(func.count()).select_from(RoutingFilter)) == 0


def test_the_import_is_the_whole_set_of_each_holder_and_idempotent(app, db, tmp_path):
    institution = InstitutionFactory(name="CMA Test")
    antenne = AntenneFactory(institution=institution, name="CMA Rhône")
    expert = ExpertFactory(antenne=antenne, email="marie@cma.example")
    other = InstitutionFactory(name="Autre")
    _filter(db, other, min_headcount=10)
    stale = _filter(db, antenne, max_years=2)
    content = _csv(
        "CMA Test,,,recrutement;formation,,,,,,,,,artisanale,",
        "cma test,CMA Rhône,,,,,,,C 47,56.10A,,,,",
        "CMA Test,,marie@cma.example,,,,10,,,,,,,69123",
    )
    dry = import_filters(content, dry_run=True)
    assert not dry.errors and (dry.created, dry.removed) == (3, 1)
    assert db.session.get(RoutingFilter, stale.id) is not None
    with transaction():
        report = import_filters(content)
    assert (report.holders, report.created, report.removed, report.unchanged) == (3, 3, 1, 0)
    assert db.session.get(RoutingFilter, stale.id) is None
    stored = db.session.scalar(select(RoutingFilter).where(RoutingFilter.antenne_id == antenne.id))
    assert (stored.naf_accepted, stored.naf_excluded) == ("C 47", "56.10A")
    assert db.session.scalar(select(RoutingFilter).where(RoutingFilter.expert_id == expert.id)).min_headcount == 10
    # The other institution, absent from the file, keeps its filter.
    assert (
        db.session.scalar(
            select(func.count()).select_from(RoutingFilter).where(RoutingFilter.institution_id == other.id)
        )
        == 1
    )
    events = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with transaction():
        again = import_filters(content)
    assert (again.created, again.removed, again.unchanged) == (0, 0, 3)
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events

    path = str(tmp_path / "filtres.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_csv("Inconnue,,,,,,,,,,,,artisanale,"))
    result = app.test_cli_runner().invoke(args=["addressbook", "filters", path])
    assert result.exit_code == 1 and "ligne 2 : institution inconnue" in result.output


def test_referents_write_the_filters_of_their_scope_only(db):
    mine = covering_expert("departement:69")
    theirs = covering_expert("departement:69")
    referent = UserFactory(role="referent", institution=mine.antenne.institution)
    antenne_referent = UserFactory(role="referent", institution=mine.antenne.institution, antenne=mine.antenne)
    policy.check_record(referent, RoutingFilter(institution=mine.antenne.institution, min_years=1), policy.CREATE)
    policy.check_record(referent, RoutingFilter(expert=mine, min_years=1), policy.CREATE)
    with pytest.raises(ServiceError):
        policy.check_record(referent, RoutingFilter(institution=theirs.antenne.institution, min_years=1), policy.CREATE)
    with pytest.raises(ServiceError):
        policy.check_record(referent, RoutingFilter(antenne=theirs.antenne, min_years=1), policy.CREATE)
    with pytest.raises(ServiceError):
        policy.check_record(
            antenne_referent, RoutingFilter(institution=mine.antenne.institution, min_years=1), policy.CREATE
        )
    policy.check_record(antenne_referent, RoutingFilter(antenne=mine.antenne, min_years=1), policy.CREATE)
    visible = _filter(db, mine, min_years=1)
    hidden = _filter(db, theirs, min_years=1)
    seen = set(db.session.scalars(policy.scope_query(referent, RoutingFilter, select(RoutingFilter.id))))
    assert visible.id in seen and hidden.id not in seen


def _question(slug="recrutement", key="apprentis", choices=("Oui", "Non")) -> SubjectQuestion:
    from app.extensions import db

    found = SubjectQuestion(
        subject=subject(slug), key=key, label="Recrutez-vous des apprentis ?", choices=list(choices)
    )
    db.session.add(found)
    db.session.commit()
    return found


def test_answers_are_required_stored_and_matched_with_expectations(db):
    _question()
    takes_apprentices = covering_expert("departement:69")
    takes_all = covering_expert("departement:69")
    from app.models import InstitutionSubject

    offer_row = db.session.scalar(
        select(InstitutionSubject).where(InstitutionSubject.institution_id == takes_apprentices.antenne.institution_id)
    )
    db.session.add(OfferExpectation(offer=offer_row, answers={"apprentis": "Oui"}))
    db.session.commit()

    with pytest.raises(InvalidSolicitation) as refused:
        submit_solicitation(solicitation_input())
    assert "Répondez à la question « Recrutez-vous des apprentis ? »" in str(refused.value)
    db.session.rollback()
    with pytest.raises(InvalidSolicitation):
        submit_solicitation(solicitation_input(answers={"apprentis": "Peut-être"}))
    db.session.rollback()

    with transaction():
        no = submit_solicitation(solicitation_input(siret="51234561200018", answers={"apprentis": "non"}))
    assert no.subject_answers == {"apprentis": "Non"}, no.qualification_notes
    assert no.need is not None, no.qualification_notes
    assert [m.expert_id for m in no.need.matches] == [takes_all.id]
    assert any(entry["decision"] == "refuse" for entry in no.need.routing_checks)
    with transaction():
        yes = submit_solicitation(
            solicitation_input(siret="61234561100018", email="autre@example.fr", answers={"apprentis": "Oui"})
        )
    assert {m.expert_id for m in yes.need.matches} == {takes_all.id, takes_apprentices.id}


def test_experts_read_the_answers_on_the_need_page(client, db):
    from app.services.messaging.links import expert_token

    _question()
    covering_expert("departement:69")
    with transaction():
        sent = submit_solicitation(solicitation_input(answers={"apprentis": "Oui"}))
    html = client.get(f"/expert/{expert_token(sent.need.matches[0])}").get_data(as_text=True)
    assert "Recrutez-vous des apprentis ? : <strong>Oui</strong>" in html
    from app.models import OutboundEmail

    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{sent.need.matches[0].id}:new"))
    assert "Ses réponses :\n- Recrutez-vous des apprentis ? : Oui" in email.body_text
    assert "<li>Recrutez-vous des apprentis ? : Oui</li>" in email.body_html


def test_the_public_form_asks_the_questions(client, db):
    _question()
    covering_expert("departement:69")
    page = client.get("/demande/recrutement").get_data(as_text=True)
    assert 'name="q-apprentis"' in page and "Recrutez-vous des apprentis ?" in page


def test_explain_with_a_company_shows_who_is_excluded_and_why(app, db):
    cma = covering_expert("departement:69")
    cci = covering_expert("departement:69")
    _filter(db, cma.antenne.institution, activities_accepted="artisanale")
    _filter(db, cci.antenne.institution, activities_accepted="commerciale")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["routing", "explain", "recrutement", LYON, "--activity", "artisanale", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [m["email"] for m in listed] == [cma.email] and listed[0]["decision"] == "accepte"
    assert listed[0]["filters"][0]["verdict"] == "accepte" and {"zone", "expert", "antenne"} <= set(listed[0])
    result = runner.invoke(
        args=["routing", "explain", "recrutement", LYON, "--siret", "51234561200018", "--show-excluded"]
    )
    assert result.exit_code == 0, result.output
    assert "Exclus par un filtre (1)" in result.output and "activité artisanale, non acceptée" in result.output
    bad = runner.invoke(args=["routing", "explain", "recrutement", LYON, "--headcount-code", "99"])
    assert bad.exit_code == 1 and "Tranche d'effectif inconnue" in bad.output


def test_the_simulator_and_the_filter_form(admin_client, db):
    expert = covering_expert("departement:69")
    _filter(db, expert.antenne.institution, activities_accepted="commerciale")
    page = admin_client.get(f"/admin/aiguillage/?subject=recrutement&commune={LYON}&activity=artisanale")
    text = page.get_data(as_text=True)
    assert (
        page.status_code == 200 and "Exclus par un filtre (1)" in text and "activité artisanale, non acceptée" in text
    )
    form = admin_client.get(f"/admin/routing_filter/new/?antenne_id={expert.antenne_id}")
    assert form.status_code == 200
    response = post_form(
        admin_client,
        "/admin/routing_filter/new/",
        {"antenne": str(expert.antenne_id), "min_headcount": "50", "max_headcount": "10"},
        token_from=f"/admin/routing_filter/new/?antenne_id={expert.antenne_id}",
    )
    assert "le maximum est inférieur au minimum" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(RoutingFilter)) == 1
    saved = post_form(
        admin_client,
        "/admin/routing_filter/new/",
        {"antenne": str(expert.antenne_id), "min_headcount": "10", "filter_subjects": str(subject("recrutement").id)},
        token_from=f"/admin/routing_filter/new/?antenne_id={expert.antenne_id}",
    )
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    created = db.session.scalar(select(RoutingFilter).where(RoutingFilter.antenne_id == expert.antenne_id))
    assert created.min_headcount == 10 and [s.slug for s in created.subjects] == ["recrutement"]
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.object_type == "RoutingFilter")
    )


def test_a_referent_saves_a_filter_for_their_expert_and_not_for_another_institution(referent_client, db):
    from app.models import Institution

    bpi = db.session.scalar(select(Institution).where(Institution.slug == "bpi"))
    mine = covering_expert("departement:69", institution=bpi)
    theirs = covering_expert("departement:69")
    new = f"/admin/routing_filter/new/?expert_id={mine.id}"
    saved = post_form(
        referent_client, "/admin/routing_filter/new/", {"expert": str(mine.id), "min_years": "2"}, token_from=new
    )
    assert saved.status_code == 302
    refused = post_form(
        referent_client,
        "/admin/routing_filter/new/",
        {"institution": str(theirs.antenne.institution_id), "min_years": "2"},
        token_from=new,
    )
    assert refused.status_code == 200
    held = db.session.scalars(select(RoutingFilter)).all()
    assert [(f.expert_id, f.institution_id) for f in held] == [(mine.id, None)]
    listing = referent_client.get("/admin/routing_filter/").get_data(as_text=True)
    assert f"expert {mine.full_name}" in listing
    other = _filter(db, theirs, min_years=1)
    assert referent_client.get(f"/admin/routing_filter/details/?id={other.id}").status_code in (302, 404)


def test_the_desk_shows_each_suggested_experts_filters_and_who_was_excluded(admin_client, db):
    cma = covering_expert("departement:69", full_name="Camille Artisans")
    cci = covering_expert("departement:69", full_name="Claude Commerce")
    _filter(db, cma.antenne.institution, activities_accepted="artisanale")
    _filter(db, cci, min_headcount=1000)
    with transaction():
        # SIREN ending in 3: software, the registry says nothing of its nature.
        held = submit_solicitation(solicitation_input(siret="71234569300014"))
    assert held.status == "in_progress"
    html = " ".join(admin_client.get(f"/admin/solicitation/details/?id={held.id}").get_data(as_text=True).split())
    assert "Non évalué</strong> — filtre #" in html and "nature d&#39;activité inconnue" in html
    assert "Exclus par un filtre de mise en relation (1)" in html
    assert "Claude Commerce" in html and "moins de 1000" in html
