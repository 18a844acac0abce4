"""Submitting, qualifying, routing and cancelling requests on the real territories:
Lyon 69123 (postal code 69001) lies in département 69, région 84."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, Company, Contact, Facility, Match, Need, OutboundEmail, Solicitation
from app.models.base import utcnow
from app.services.addressbook.routing import find_experts
from app.services.errors import ServiceError
from app.services.messaging import expert_emails, links
from app.services.requests import solicitations
from app.services.requests.cancellation import cancel_solicitation
from app.services.requests.dispatch import route_solicitation
from app.services.requests.solicitations import (
    qualification_issues,
    submit_solicitation,
)
from app.services.transactions import transaction
from tests.factories import (
    LYON,
    InstitutionFactory,
    covering_expert,
    solicitation_input,
    subject,
    valid_siret,
    zone,
)
from tests.helpers import emails_by_key, expert_links


@pytest.fixture
def experts(db):
    """Two institutions cover Lyon for recruitment (one by département, one national; one has
    an expert with their own zone elsewhere); others must not receive it."""
    cci = InstitutionFactory(name="CCI Lyon Métropole")
    near = covering_expert("departement:69", institution=cci, full_name="Alice CCI")
    national = covering_expert("national", institution=InstitutionFactory(name="Pôle emploi"), full_name="Bruno PE")
    elsewhere = covering_expert("departement:13", full_name="Chloé Marseille")
    other_subject = covering_expert("departement:69", subject_slug="export", full_name="Denis Export")
    own_zone_elsewhere = covering_expert("departement:69", institution=cci, full_name="Eve CCI Ain")
    zone(own_zone_elsewhere, "departement:01")
    return {"routed": [near, national], "not_routed": [elsewhere, other_subject, own_zone_elsewhere]}


# ---------------------------------------------------------------- auto mode


def test_auto_mode_routes_a_clean_request_to_exactly_the_experts_of_the_rule(db, app, experts):
    solicitation = submit_solicitation(solicitation_input())

    assert solicitation.status == "processed"
    assert solicitation.processed_at is not None
    assert solicitation.qualification_notes == []
    assert solicitation.company_name == f"Entreprise {solicitation.siret[:9]}"
    assert solicitation.mtm_campaign == "printemps"
    need = solicitation.need
    routed = find_experts(subject("recrutement").id, LYON)
    assert {m.expert_id for m in need.matches} == {r.expert_id for r in routed} == {e.id for e in experts["routed"]}
    by_expert = {r.expert_id: r for r in routed}
    for match in need.matches:
        assert (match.status, match.zone, match.zone_owner) == (
            "quo",
            by_expert[match.expert_id].zone,
            by_expert[match.expert_id].zone_owner,
        )
    assert (need.status, need.subject.slug, need.description) == ("quo", "recrutement", solicitation.description)
    assert (need.facility.siret, need.facility.commune_code) == (solicitation.siret, LYON)
    assert need.facility.company.siren == solicitation.siret[:9]
    # Stored in the form's normal form, whatever the interface (E.164 for the phone).
    assert (need.contact.full_name, need.contact.email, need.contact.phone) == (
        "Camille Martin",
        "camille@boulangerie.example",
        "+33472000000",
    )


def test_auto_mode_queues_one_confirmation_and_one_email_per_expert(db, app, experts):
    solicitation = submit_solicitation(solicitation_input())
    queued = emails_by_key()
    matches = solicitation.need.matches
    assert set(queued) == {f"solicitation:{solicitation.id}:confirmation"} | {f"match:{m.id}:new" for m in matches}

    confirmation = queued[f"solicitation:{solicitation.id}:confirmation"]
    assert confirmation.recipient == "camille@boulangerie.example"
    assert confirmation.subject == "Confirmation de votre demande « Recruter un ou plusieurs salariés »"
    for body in (confirmation.body_text, confirmation.body_html):
        assert "sous 5 jours ouvrés" in body
        assert "CCI Lyon Métropole" in body and "Pôle emploi" in body
        assert "Recruter un ou plusieurs salariés" in body
        assert f"Référence de votre demande : n° {solicitation.id}" in body
        # Finding 7 of the security review: nothing typed on the form is quoted to an
        # address nobody has verified yet (the email would relay a stranger's text).
        assert solicitation.full_name not in body and solicitation.description[:40] not in body

    base_url = app.config["BASE_URL"]
    for match in matches:
        email = queued[f"match:{match.id}:new"]
        assert email.recipient == match.expert.email
        assert email.subject == "Une entreprise a besoin de vous : Recruter un ou plusieurs salariés"
        for body in (email.body_text, email.body_html):
            for expected in (
                "Recruter un ou plusieurs salariés",
                "Lyon (69001)",
                solicitation.company_name,
                solicitation.siret,
                "Camille Martin",
                "camille@boulangerie.example",
                "04 72 00 00 00",
                "deux apprentis boulangers",
            ):
                assert expected in body, expected
        [link] = expert_links(email.body_text, base_url)
        assert links.match_for_token(link.removeprefix(f"{base_url}/expert/")).id == match.id
        assert f'href="{link}"' in email.body_html


def test_the_html_escapes_what_the_business_typed(db, experts):
    solicitation = submit_solicitation(
        solicitation_input(description="<script>alert('x')</script> & un besoin réel de recrutement")
    )
    email = OutboundEmail.query.filter(OutboundEmail.key == f"match:{solicitation.need.matches[0].id}:new").one()
    assert "<script>" not in email.body_html and "&lt;script&gt;" in email.body_html
    assert "<script>" in email.body_text  # the text part is plain text, shown as typed


def test_an_unknown_siret_in_the_registry_still_routes(db, experts, monkeypatch):
    class Silent:
        def lookup(self, _siret):
            return None

    monkeypatch.setattr("app.services.reference.registry.get_registry", lambda: Silent())
    solicitation = submit_solicitation(solicitation_input())
    assert solicitation.status == "processed"
    assert solicitation.company_name is None and solicitation.registry_data is None
    assert solicitation.need.facility.company.name == f"Entreprise {solicitation.siret[:9]}"


def test_a_failing_registry_never_blocks_a_request(db, experts, monkeypatch):
    class Broken:
        def lookup(self, _siret):
            raise TimeoutError("registre injoignable")

    monkeypatch.setattr("app.services.reference.registry.get_registry", lambda: Broken())
    assert submit_solicitation(solicitation_input()).status == "processed"


def test_a_returning_company_and_contact_are_reused(db, experts):
    first = submit_solicitation(solicitation_input())
    second = submit_solicitation(
        solicitation_input(subject_slug="recrutement", email="CAMILLE@boulangerie.example", phone="06 00 00 00 00")
    )
    # Same SIRET, same subject, first still open: a duplicate, left to staff.
    assert second.status == "in_progress"
    cancel_solicitation(second, reason="doublon")
    first.need.status = "done"
    db.session.commit()
    third = submit_solicitation(solicitation_input(email="CAMILLE@boulangerie.example", phone="06 11 22 33 44"))
    assert third.status == "processed"
    assert third.need.facility_id == first.need.facility_id
    assert third.need.contact_id == first.need.contact_id
    assert third.need.contact.phone == "+33611223344"
    assert db.session.scalar(select(func.count()).select_from(Company)) == 1
    assert db.session.scalar(select(func.count()).select_from(Facility)) == 1
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 1


def test_the_insee_code_may_be_deduced_when_the_postal_code_has_one_commune(db, experts):
    solicitation = submit_solicitation(solicitation_input(insee_code=""))
    assert solicitation.insee_code == LYON


# ---------------------------------------------------------------- all or nothing


def test_a_failure_while_routing_stores_nothing(db, experts, monkeypatch):
    real = expert_emails.queue_email
    calls = {"experts": 0}

    def failing(key, **kwargs):
        if kwargs["template"] == "match_new":
            calls["experts"] += 1
            if calls["experts"] == 2:
                raise RuntimeError("panne au deuxième expert")
        return real(key, **kwargs)

    monkeypatch.setattr(expert_emails, "queue_email", failing)
    with pytest.raises(RuntimeError, match="deuxième expert"), transaction():
        submit_solicitation(solicitation_input())

    assert calls["experts"] == 2
    for model in (Solicitation, OutboundEmail, Need, Match, Company, Facility, Contact):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0, model.__name__
    trail = select(func.count()).where(AuditEvent.object_type.in_(["Solicitation", "Need", "Match"]))
    assert db.session.scalar(trail) == 0
    assert not db.session.info.get("after_commit_collections")  # nothing left to hand to the worker


# ---------------------------------------------------------------- review mode and qualification


def test_review_mode_confirms_and_waits(db, app, experts, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    solicitation = submit_solicitation(solicitation_input())
    assert solicitation.status == "in_progress"
    assert solicitation.need is None
    assert solicitation.qualification_notes == [solicitations.REVIEW_MODE_NOTE]
    assert set(emails_by_key()) == {f"solicitation:{solicitation.id}:confirmation"}
    assert db.session.scalar(select(func.count()).select_from(Match)) == 0


def _waits_with(solicitation: Solicitation, fragment: str) -> None:
    assert solicitation.status == "in_progress"
    assert solicitation.need is None
    assert any(fragment in note for note in solicitation.qualification_notes), solicitation.qualification_notes
    assert qualification_issues(solicitation) == solicitation.qualification_notes
    # The business is confirmed all the same.
    assert f"solicitation:{solicitation.id}:confirmation" in emails_by_key()


def test_duplicate_by_siret_waits(db, experts):
    first = submit_solicitation(solicitation_input())
    second = submit_solicitation(solicitation_input(email="autre@boulangerie.example"))
    _waits_with(second, f"Doublon : la demande #{first.id} du même SIRET")


def test_duplicate_by_email_waits(db, experts):
    first = submit_solicitation(solicitation_input())
    second = submit_solicitation(solicitation_input(siret=valid_siret(9999), email="Camille@Boulangerie.example"))
    _waits_with(second, f"Doublon : la demande #{first.id} de la même adresse électronique")


def test_a_request_on_another_subject_or_after_the_first_closed_is_no_duplicate(db, experts):
    covering_expert("departement:69", subject_slug="formation")
    first = submit_solicitation(solicitation_input())
    assert submit_solicitation(solicitation_input(subject_slug="formation")).status == "processed"
    first.need.status = "done_no_help"
    db.session.commit()
    assert submit_solicitation(solicitation_input()).status == "processed"


def test_a_waiting_request_counts_as_open(db, app, experts, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    first = submit_solicitation(solicitation_input())
    monkeypatch.setitem(app.config, "ROUTING_MODE", "auto")
    _waits_with(submit_solicitation(solicitation_input()), f"#{first.id}")


def test_blocked_domain_waits(db, app, experts, monkeypatch):
    monkeypatch.setitem(app.config, "BLOCKED_EMAIL_DOMAINS", ["spam.example"])
    _waits_with(submit_solicitation(solicitation_input(email="robot@mx.spam.example")), "Adresse bloquée")


def test_an_address_cancelled_as_spam_is_blocked(db, app, experts, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    first = submit_solicitation(solicitation_input(email="robot@pub.example"))
    cancel_solicitation(first, reason="spam")
    monkeypatch.setitem(app.config, "ROUTING_MODE", "auto")
    _waits_with(
        submit_solicitation(solicitation_input(email="ROBOT@pub.example", siret=valid_siret(77))),
        "abandonnée comme spam",
    )


def test_no_expert_waits(db, experts):
    _waits_with(submit_solicitation(solicitation_input(subject_slug="cybersecurite")), "Aucun expert trouvé")


def test_an_archived_subject_is_refused_on_submit_and_not_routable_later(db, app, experts, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    solicitation = submit_solicitation(solicitation_input())
    recruitment = subject("recrutement")
    recruitment.archived_at = utcnow()
    db.session.commit()
    assert any("archivé" in issue for issue in qualification_issues(solicitation))
    with pytest.raises(ServiceError, match="archivé"):
        route_solicitation(solicitation)
    with pytest.raises(ServiceError, match="n'est plus proposé"):
        submit_solicitation(solicitation_input())


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        # The public form's own messages: one set of rules, whatever the interface.
        ({"insee_code": "13055"}, "insee_code", "Cette commune ne correspond pas au code postal"),
        ({"postal_code": "00000"}, "postal_code", "Ce code postal n'existe pas"),
        ({"siret": "1234567890123"}, "siret", "14 chiffres"),
        ({"siret": "1234567890123A"}, "siret", "14 chiffres"),
        # A checksum the form refuses (the service used to store it).
        ({"siret": "12345678901234"}, "siret", "Ce numéro SIRET n'est pas valide"),
        ({"subject_slug": "inconnu"}, None, "Sujet inconnu"),
        ({"description": "   "}, "description", "Décrivez votre besoin."),
        # A postal code of several communes needs the chosen one.
        ({"postal_code": "01400", "insee_code": ""}, "insee_code", "couvre plusieurs communes"),
    ],
)
def test_submit_checks_its_invariants_again(db, experts, overrides, field, message):
    with pytest.raises(ServiceError, match=message) as refused:
        submit_solicitation(solicitation_input(**overrides))
    if field is not None:
        assert message in refused.value.errors[field]
    assert db.session.scalar(select(func.count()).select_from(Solicitation)) == 0
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 0


# ---------------------------------------------------------------- staff verbs


def test_staff_route_a_waiting_request(db, app, experts, admin_user, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    solicitation = submit_solicitation(solicitation_input())
    need = route_solicitation(solicitation, by_user_id=admin_user.id)

    assert solicitation.status == "processed" and solicitation.processed_at is not None
    assert {m.expert_id for m in need.matches} == {e.id for e in experts["routed"]}
    assert set(emails_by_key()) == {f"solicitation:{solicitation.id}:confirmation"} | {
        f"match:{m.id}:new" for m in need.matches
    }
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.object_type == "Need", AuditEvent.object_id == need.id)
    )
    assert (event.user_id, event.actor) == (admin_user.id, admin_user.email)


def test_staff_errors_are_french(db, app, experts, monkeypatch):
    routed = submit_solicitation(solicitation_input())
    with pytest.raises(ServiceError, match="déjà été transmise"):
        route_solicitation(routed)
    with pytest.raises(ServiceError, match="déjà été transmise"):
        cancel_solicitation(routed)

    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    canceled = submit_solicitation(
        solicitation_input(siret=valid_siret(55), email="x@y.example", subject_slug="export")
    )
    cancel_solicitation(canceled, reason="hors sujet")
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    assert canceled.qualification_notes[-1] == "Abandonnée : hors sujet"
    with pytest.raises(ServiceError, match="abandonnée"):
        route_solicitation(canceled)
    with pytest.raises(ServiceError, match="déjà abandonnée"):
        cancel_solicitation(canceled)

    unroutable = submit_solicitation(
        solicitation_input(siret=valid_siret(56), email="z@y.example", subject_slug="cybersecurite")
    )
    with pytest.raises(ServiceError, match="Aucun expert ne couvre le sujet « Sécuriser mes outils numériques »"):
        route_solicitation(unroutable)
    assert unroutable.status == "in_progress"
    assert db.session.scalar(select(func.count()).select_from(Need)) == 1  # only the first one's
