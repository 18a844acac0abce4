"""The routing rule, proved on the real territories: Lyon 69123 lies in EPCI
200046977 (Métropole de Lyon), département 69 (Rhône), région 84 (Auvergne-Rhône-Alpes)."""

from __future__ import annotations

import json

import pytest

from app.models.base import utcnow
from app.services.addressbook import routing
from app.services.errors import ServiceError
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, subject, zone

LYON = "69123"
MARSEILLE = "13055"


def _expert(antenne_zone: str | None = "departement:69", subject_slug: str = "recrutement", **kwargs):
    antenne = kwargs.pop("antenne", None) or AntenneFactory()
    if antenne_zone and not kwargs.pop("keep_antenne_zone", False):
        zone(antenne, antenne_zone)
    expert = ExpertFactory(antenne=antenne, **kwargs)
    offer(expert, subject_slug)
    return expert


def _emails(subject_slug: str = "recrutement", insee: str = LYON) -> list[str]:
    return [m.email for m in routing.find_experts(subject(subject_slug).id, insee)]


@pytest.mark.parametrize("reference", ["commune:69123", "epci:200046977", "departement:69", "region:84", "national"])
def test_antenne_zone_at_each_level(db, reference):
    expert = _expert(reference)
    assert _emails() == [expert.email]
    [match] = routing.find_experts(subject("recrutement").id, LYON)
    assert (match.zone, match.zone_owner) == (reference, "antenne")


@pytest.mark.parametrize("reference", ["commune:13055", "epci:200054807", "departement:13", "region:93"])
def test_antenne_zone_elsewhere_does_not_receive(db, reference):
    _expert(reference)
    assert _emails() == []


def test_expert_own_zone_elsewhere_replaces_the_antenne_zone(db):
    expert = _expert("region:84")
    zone(expert, "departement:13")
    assert _emails() == []
    assert _emails(insee=MARSEILLE) == [expert.email]


def test_expert_own_zone_here_receives_though_the_antenne_zone_does_not_cover(db):
    expert = _expert("departement:13")
    zone(expert, "commune:69123")
    [match] = routing.find_experts(subject("recrutement").id, LYON)
    assert (match.email, match.zone, match.zone_owner) == (expert.email, "commune:69123", "expert")


def test_expert_national_overrides_a_narrow_antenne_zone(db):
    expert = _expert("commune:13055")
    zone(expert, "national")
    [match] = routing.find_experts(subject("recrutement").id, LYON)
    assert (match.email, match.zone, match.zone_owner) == (expert.email, "national", "expert")


def test_colleague_without_own_zone_keeps_the_antenne_zone(db):
    overriding = _expert("departement:69")
    zone(overriding, "departement:13")
    colleague = _expert(antenne=overriding.antenne, keep_antenne_zone=True)
    assert _emails() == [colleague.email]


@pytest.mark.parametrize("deleted", ["expert", "antenne", "institution"])
def test_deleted_rows_are_excluded(db, deleted):
    expert = _expert("region:84")
    kept = _expert("region:84")
    owner = {"expert": expert, "antenne": expert.antenne, "institution": expert.antenne.institution}[deleted]
    owner.deleted_at = utcnow()
    db.session.commit()
    assert _emails() == [kept.email]


def test_archived_subject_routes_to_nobody(db):
    _expert("national")
    recrutement = subject("recrutement")
    recrutement.archived_at = utcnow()
    db.session.commit()
    assert routing.find_experts(recrutement.id, LYON) == []
    with pytest.raises(ServiceError, match="archivé"):
        routing.explain("recrutement", LYON)


def test_a_subject_of_an_archived_theme_is_neither_routed_nor_accepted(db):
    """One rule (``Subject.is_offered``) for the form, the service, routing and the desk: the
    public form refused such a subject while the service and routing accepted it."""
    from app.services.requests.solicitations import SolicitationInput, submit_solicitation

    _expert("national")
    recrutement = subject("recrutement")
    recrutement.theme.archived_at = utcnow()
    db.session.commit()
    assert not recrutement.is_offered
    assert routing.find_experts(recrutement.id, LYON) == []
    assert routing.unroutable_reason(recrutement) == "Sujet non aiguillable : ce sujet est archivé."
    with pytest.raises(ServiceError, match="archivé"):
        routing.explain("recrutement", LYON)
    with pytest.raises(ServiceError, match="n'est plus proposé"):
        submit_solicitation(
            SolicitationInput(
                subject_slug="recrutement",
                full_name="Camille Martin",
                email="camille@boulangerie.example",
                phone="04 72 00 00 00",
                siret="12345678200028",
                postal_code="69001",
                insee_code=LYON,
                description="Nous cherchons à recruter deux apprentis boulangers.",
            )
        )
    assert recrutement not in [found for _theme, subjects in routing.routable_subjects() for found in subjects]


def test_expert_not_taking_the_subject_is_excluded(db):
    _expert("national", subject_slug="formation")
    taker = _expert("national")
    assert _emails() == [taker.email]
    assert _emails("gestion-equipe") == []


def test_offer_of_another_institution_does_not_count(db):
    """An expert takes a subject through *its* institution's offer, not anyone's."""
    from app.models import ExpertSubject

    stranger = _expert("national", subject_slug="formation")
    other = _expert("national")
    db.session.add(ExpertSubject(expert=stranger, institution_subject=other.subjects[0].institution_subject))
    db.session.commit()
    assert _emails() == [other.email]


def test_several_institutions_all_receive_sorted(db):
    b = _expert("region:84", antenne=AntenneFactory(institution=InstitutionFactory(name="B Institution")))
    a2 = _expert("departement:69", antenne=AntenneFactory(institution=InstitutionFactory(name="A Institution")))
    a1 = _expert(antenne=a2.antenne, keep_antenne_zone=True, full_name="Aaa")
    _expert("departement:13")
    assert _emails() == [a1.email, a2.email, b.email]


def test_nobody(db):
    assert _emails() == []
    assert routing.explain("recrutement", LYON).lines()[-1] == "Aucun expert ne recevrait cette demande."


def test_most_specific_zone_entry_is_reported(db):
    expert = _expert("region:84")
    for reference in ("departement:69", "epci:200046977", "commune:69123"):
        zone(expert.antenne, reference)
    expert.antenne.national = True
    db.session.commit()
    [match] = routing.find_experts(subject("recrutement").id, LYON)
    assert match.zone == "commune:69123"
    [commune_entry] = [z for z in expert.antenne.zones if z.kind == "commune"]
    db.session.delete(commune_entry)
    db.session.commit()
    [match] = routing.find_experts(subject("recrutement").id, LYON)
    assert match.zone == "epci:200046977"


def test_unknown_commune_and_subject(db):
    with pytest.raises(ServiceError, match="Commune inconnue"):
        routing.find_experts(subject("recrutement").id, "00000")
    with pytest.raises(ServiceError, match="Commune inconnue"):
        routing.explain("recrutement", "00000")
    with pytest.raises(ServiceError, match="Sujet inconnu"):
        routing.explain("astrologie", LYON)


def test_explain_lines(db):
    expert = _expert("departement:69", full_name="Camille Martin")
    lines = routing.explain("recrutement", LYON).lines()
    assert "Recruter un ou plusieurs salariés" in lines[0]
    assert "Lyon (69123)" in lines[0] and "Rhône (69)" in lines[0] and "(200046977)" in lines[0]
    assert lines[-1] == (
        f"- Camille Martin <{expert.email}> — antenne {expert.antenne.name} — "
        f"{expert.antenne.institution.name} — zone : département:69 (Rhône), zone de l'antenne"
    )


def test_find_experts_runs_a_constant_number_of_queries(db, count_queries):
    recrutement_id = subject("recrutement").id
    _expert("region:84")
    db.session.expire_all()
    with count_queries() as few:
        assert len(routing.find_experts(recrutement_id, LYON)) == 1
    antenne = AntenneFactory()
    zone(antenne, "departement:69")
    for _ in range(15):
        _expert(antenne=antenne, keep_antenne_zone=True)
    own = _expert("national")
    zone(own, "commune:69123")
    db.session.expire_all()
    with count_queries() as many:
        assert len(routing.find_experts(recrutement_id, LYON)) == 17
    assert many.count == few.count == 2


def test_cli_explain_json(app, db):
    expert = _expert("epci:200046977")
    result = app.test_cli_runner().invoke(args=["routing", "explain", "recrutement", LYON, "--json"])
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert {"email", "expert", "antenne", "institution", "zone", "expert_id", "zone_owner"} <= set(item)
    assert (item["email"], item["zone"], item["zone_owner"]) == (expert.email, "epci:200046977", "antenne")
    assert item["institution"] == expert.antenne.institution.name


def test_cli_explain_text_and_errors(app, db):
    _expert("national")
    result = app.test_cli_runner().invoke(args=["routing", "explain", "recrutement", LYON])
    assert result.exit_code == 0
    assert "national, zone de l'antenne" in result.output
    result = app.test_cli_runner().invoke(args=["routing", "explain", "astrologie", LYON])
    assert result.exit_code == 1
    assert "Sujet inconnu" in result.output
