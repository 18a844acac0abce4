"""The partners' back office (issue 16): partners and their origins, landings and their embed
snippets, API keys (shown once, scoped to the referent's institution, revoked), filing a request
for a business (staff and referents, experts chosen within scope), and the requests' provenance
in the list, its filter and its export."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import ApiKey, Expert, Landing, OutboundEmail, Partner, Solicitation
from tests.factories import make_landing, subject
from tests.helpers import VALID_FORM as VALID
from tests.helpers import body, csrf_token_from, filter_arg, post_form

FILE = "/admin/saisir-une-demande/"


def test_staff_create_a_partner_with_normalised_origins_and_are_told_a_wrong_one(admin_client, app):
    data = {"name": "Portail régional", "origins_text": "https://WWW.Region.fr/aides\nhttps://region.fr"}
    response = post_form(admin_client, "/admin/partner/new/", data)
    assert response.status_code == 302, body(response)
    with app.app_context():
        partner = _db.session.scalar(select(Partner))
        assert partner.origins == ["https://www.region.fr", "https://region.fr"]
    refused = post_form(admin_client, "/admin/partner/new/", {"name": "Autre", "origins_text": "http://pas-sur.fr"})
    assert refused.status_code == 200
    assert "seules les origines https" in body(refused)
    assert "http://pas-sur.fr" in body(refused)  # what was typed is kept


def test_staff_create_a_landing_with_subjects_and_titles_and_see_its_snippets(admin_client, app, db):
    partner = Partner(name="Portail", origins=["https://partenaire.example"])
    _db.session.add(partner)
    _db.session.commit()
    ids = [str(subject("recrutement").id), str(subject("export").id)]
    data = {
        "partner": str(partner.id),
        "slug": "portail",
        "title": "Les aides du portail",
        "landing_subjects": ids,
        "subject_titles": "recrutement = Embaucher",
    }
    response = post_form(admin_client, "/admin/landing/new/", data)
    assert response.status_code == 302, body(response)
    landing = _db.session.scalar(select(Landing))
    assert [(item.subject.slug, item.title) for item in landing.subjects] == [
        ("recrutement", "Embaucher"),
        ("export", None),
    ]
    details = body(admin_client.get(f"/admin/landing/details/?id={landing.id}"))
    assert details.count("data-pde-iframe=") == 4
    assert "/iframe/portail/demande/recrutement" in details
    assert "pde-embed.js" in details
    wrong = post_form(admin_client, "/admin/landing/new/", {**data, "slug": "autre", "subject_titles": "formation = X"})
    assert "pas un sujet choisi pour cette landing" in body(wrong)


def test_referents_do_not_manage_partners_or_landings(institution_referent_client, db):
    make_landing()
    assert institution_referent_client.get("/admin/partner/").status_code == 403
    assert institution_referent_client.get("/admin/landing/").status_code == 403


# ---------------------------------------------------------------- keys


def test_staff_create_a_key_shown_once_then_revoke_it(admin_client, app, scope_world):
    page = admin_client.get("/admin/cles-api/")
    with app.app_context():
        from app.models import Institution

        alpha = str(_db.session.scalar(select(Institution.id).where(Institution.slug == "alpha-conseil")))
    response = admin_client.post(
        "/admin/cles-api/creer",
        data={"institution": alpha, "valid_days": "30", "label": "site", "csrf_token": csrf_token_from(body(page))},
    )
    assert response.status_code == 200
    secret = re.search(r'value="(pde_[^"]+)"', body(response)).group(1)
    assert "ne sera plus jamais affichée" in body(response)
    assert secret not in body(admin_client.get("/admin/cles-api/"))  # never again
    assert admin_client.get("/api/v1/landings", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    with app.app_context():
        key_id = _db.session.scalar(select(ApiKey.id))
    revoked = post_form(admin_client, f"/admin/cles-api/{key_id}/revoquer", {}, token_from="/admin/cles-api/")
    assert revoked.status_code == 303
    assert admin_client.get("/api/v1/landings", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    bad = post_form(
        admin_client,
        "/admin/cles-api/creer",
        {"institution": alpha, "valid_days": "dix"},
        token_from="/admin/cles-api/",
    )
    assert bad.status_code == 422 and "nombre de jours" in body(bad)


def test_an_institution_referent_manages_its_own_keys_only(
    institution_referent_client, antenne_referent_client, app, scope_world
):
    from app.models import Institution
    from app.services.partners.apikeys import create_key
    from app.services.transactions import transaction

    with app.app_context():
        alpha, zorglub = (
            _db.session.scalar(select(Institution).where(Institution.slug == slug))
            for slug in ("alpha-conseil", "zorglub-partenaires")
        )
        with transaction():
            foreign = create_key(zorglub).key.id
        alpha_id, zorglub_id = alpha.id, zorglub.id
    client = institution_referent_client
    page = body(client.get("/admin/cles-api/"))
    assert "Zorglub" not in page
    refused = post_form(
        client,
        "/admin/cles-api/creer",
        {"institution": str(zorglub_id), "valid_days": "30"},
        token_from="/admin/cles-api/",
    )
    assert refused.status_code == 422
    made = post_form(
        client,
        "/admin/cles-api/creer",
        {"institution": str(alpha_id), "valid_days": "30"},
        token_from="/admin/cles-api/",
    )
    assert made.status_code == 200 and "pde_" in body(made)
    assert (
        post_form(client, f"/admin/cles-api/{foreign}/revoquer", {}, token_from="/admin/cles-api/").status_code == 404
    )
    assert antenne_referent_client.get("/admin/cles-api/").status_code == 403


# ---------------------------------------------------------------- filing for a business


def test_staff_file_a_request_routed_by_the_rule_and_the_business_is_told_who(admin_client, app, book, admin_user):
    response = post_form(admin_client, FILE + "?subject=recrutement", {**VALID, "subject": "recrutement"})
    assert response.status_code == 200, body(response)
    assert "Demande n°" in body(response)
    with app.app_context():
        solicitation = _db.session.scalar(select(Solicitation))
        assert solicitation.channel == "backoffice"
        assert solicitation.filed_by_id == admin_user.id
        assert solicitation.status == "processed"
        assert len(solicitation.need.matches) == 2
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key.like("solicitation:%:confirmation")))
        assert "saisie pour vous par" in email.body_text
    listed = body(admin_client.get("/admin/solicitation/"))
    assert "Saisie par un conseiller" in listed


def test_filing_errors_are_shown_per_field_and_keep_what_was_typed(admin_client, app, book):
    response = post_form(
        admin_client, FILE + "?subject=recrutement", {**VALID, "subject": "recrutement", "siret": "123"}
    )
    assert response.status_code == 422
    assert "SIRET" in body(response)
    assert "Marie" in body(response)
    with app.app_context():
        assert _db.session.scalar(select(Solicitation)) is None


def test_a_referent_files_to_experts_of_its_scope_only(institution_referent_client, app, scope_world):
    with app.app_context():
        alice = _db.session.scalar(select(Expert).where(Expert.full_name == "Alice Alpha"))
        zoe = _db.session.scalar(select(Expert).where(Expert.full_name == "Zoé Zorglub"))
        alice_id, zoe_id = alice.id, zoe.id
    client = institution_referent_client
    page = body(client.get(FILE + "?subject=recrutement"))
    assert "Alice Alpha" in page and "Zorglub" not in page
    data = {**VALID, "subject": "recrutement", "experts": [str(zoe_id)]}
    refused = post_form(client, FILE + "?subject=recrutement", data)
    assert refused.status_code == 422 and "périmètre" in body(refused)
    made = post_form(client, FILE + "?subject=recrutement", {**data, "experts": [str(alice_id)]})
    assert made.status_code == 200, body(made)
    with app.app_context():
        solicitation = _db.session.scalar(select(Solicitation))
        assert [m.expert_id for m in solicitation.need.matches] == [alice_id]
        assert solicitation.filed_by.email == scope_world.institution_referent.email


# ---------------------------------------------------------------- provenance in lists, filters, exports


@pytest.fixture
def mixed_requests(db, book):
    from app.services.transactions import transaction
    from tests.factories import solicitation_input

    landing = make_landing()
    from app.services.requests.solicitations import submit_solicitation

    with transaction():
        submit_solicitation(solicitation_input())
        submit_solicitation(
            solicitation_input(
                email="autre@exemple.fr",
                siret="35600000000048",
                channel="iframe",
                landing_id=landing.id,
                origin_url="https://partenaire.example/aides",
            )
        )
    return landing


def test_the_list_shows_filters_and_exports_the_provenance(admin_client, app, mixed_requests):
    listed = body(admin_client.get("/admin/solicitation/"))
    assert "Formulaire intégré chez un partenaire" in listed and "Site Place des Entreprises" in listed
    with app.app_context(), app.test_request_context():
        arg = filter_arg("solicitation", "Provenance")
    only = body(admin_client.get(f"/admin/solicitation/?flt0_{arg}=iframe"))
    assert "autre@exemple.fr" in only and "camille@boulangerie.example" not in only
    export = admin_client.get("/admin/solicitation/export/csv/").get_data(as_text=True)
    assert "Provenance" in export and "https://partenaire.example/aides" in export
