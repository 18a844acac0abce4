"""The public request form over HTTP: each refusal is a 422 with its French
message next to its field and nothing stored; a valid request is stored normalised and
redirected to a confirmation page; bots, forged posts and floods are turned away."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db as _db
from app.models import Solicitation
from tests.helpers import VALID_FORM as VALID
from tests.helpers import csrf_token_from, served_at_from

SUBJECT = "recrutement"
FORM = f"/demande/{SUBJECT}"


def open_form(client, path: str = FORM) -> dict[str, str]:
    """GET the form and return the hidden fields a browser would post back."""
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return {"csrf_token": csrf_token_from(html), "served_at": served_at_from(html)}


def post(client, path: str = FORM, **fields):
    data = {**open_form(client, path.split("?")[0] + ("?" + path.split("?")[1] if "?" in path else "")), **VALID}
    data.update(fields)
    return client.post(path, data=data)


def stored_count(app) -> int:
    with app.app_context():
        return _db.session.scalar(select(func.count()).select_from(Solicitation))


def error_of(html: str, field: str) -> str | None:
    match = re.search(rf'<p id="{field}-error" class="fr-error-text[^"]*">([^<]*)</p>', html)
    return match.group(1) if match else None


# ---------------------------------------------------------------- the pages


def test_the_form_has_the_contract_fields_the_traps_and_a_hint(client):
    html = client.get(FORM).get_data(as_text=True)
    for name in ("full_name", "email", "phone", "siret", "postal_code", "insee_code", "description", "csrf_token"):
        assert f'name="{name}"' in html, name
    honeypot = re.search(r'<input[^>]*name="telecopie"[^>]*>', html).group(0)
    assert 'autocomplete="off"' in honeypot and 'tabindex="-1"' in honeypot and 'value=""' in honeypot
    assert "Laissez ce champ vide" in html
    assert '<div class="fr-sr-only">' in html
    assert served_at_from(html)
    assert "la taille de l&#39;entreprise" in html and "l&#39;urgence" in html
    assert "<title>Votre demande — Recruter" in html


@pytest.mark.parametrize("slug", ["inconnu", "recrutement-2", "R%C3%A9seau"])
def test_an_unknown_subject_is_a_french_404(client, slug):
    response = client.get(f"/demande/{slug}")
    assert response.status_code == 404
    assert "Page introuvable" in response.get_data(as_text=True)


def test_an_archived_subject_is_a_404(client, app):
    from app.models import Subject
    from app.models.base import utcnow

    with app.app_context():
        subject = _db.session.scalar(select(Subject).where(Subject.slug == SUBJECT))
        subject.archived_at = utcnow()
        _db.session.commit()
    assert client.get(FORM).status_code == 404
    assert 'href="/demande/recrutement"' not in client.get("/").get_data(as_text=True)


def test_home_page_links_every_subject_to_its_form(client):
    html = client.get("/").get_data(as_text=True)
    assert 'href="/demande/recrutement"' in html
    assert "fr-tile" in html


# ---------------------------------------------------------------- a valid request


def test_a_valid_request_is_stored_normalised_with_its_campaign_and_redirected(client, app):
    path = FORM + "?mtm_campaign=salon-2026&mtm_kwd=boulangerie&mtm_source=newsletter&autre=ignoré"
    form_html = client.get(path).get_data(as_text=True)
    assert (
        'action="/demande/recrutement?mtm_campaign=salon-2026&amp;mtm_kwd=boulangerie&amp;mtm_source=newsletter"'
        in (form_html)
    )
    response = client.post(
        path,
        data={**VALID, "csrf_token": csrf_token_from(form_html), "served_at": served_at_from(form_html)},
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/demande/recrutement/merci"
    with app.app_context():
        stored = _db.session.scalars(select(Solicitation)).one()
        assert stored.subject.slug == SUBJECT
        assert stored.full_name == "Marie Dupont"
        assert stored.email == "marie.dupont@entreprise.fr"
        assert stored.phone == "+33612345678"
        assert stored.siret == "12345678200028"
        assert stored.postal_code == "69002"
        assert stored.insee_code == "69123"
        assert stored.description == VALID["description"]
        assert (stored.mtm_campaign, stored.mtm_kwd, stored.mtm_source) == ("salon-2026", "boulangerie", "newsletter")

    confirmation = client.get(response.headers["Location"])
    page = confirmation.get_data(as_text=True)
    assert confirmation.status_code == 200
    assert "Un expert vous rappelle sous 5 jours ouvrés" in page
    assert "Un email de confirmation vous a été envoyé" in page
    assert f'href="{app.config["JDMA_URL"]}"' in page.replace("&amp;", "&")
    assert 'alt="Je donne mon avis"' in page
    assert "<script" not in page.split("</main>")[0].split("<main")[1]  # no tracking script
    for personal in ("Dupont", "entreprise.fr", "12345678200028", "+33612345678"):
        assert personal not in page


def test_a_la_poste_siret_and_an_overseas_number_are_accepted(client, app):
    response = post(client, siret="356 000 000 49837", phone="0590 12 34 56", postal_code="97110", insee_code="")
    assert response.status_code == 303, error_of(response.get_data(as_text=True), "siret")
    with app.app_context():
        stored = _db.session.scalars(select(Solicitation)).one()
        assert (stored.siret, stored.phone, stored.insee_code) == ("35600000049837", "+590590123456", "97120")


# ---------------------------------------------------------------- each refusal


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("full_name", "   ", "Indiquez votre prénom et votre nom."),
        ("full_name", "x" * 201, "Le nom ne doit pas dépasser 200 caractères."),
        ("full_name", "Marie\x00Dupont", "Le nom contient des caractères non autorisés."),
        ("email", "", "Indiquez votre adresse email."),
        ("email", "marie.dupont@", "Indiquez une adresse email valide, par exemple marie.dupont@entreprise.fr."),
        (
            "email",
            "marie dupont@entreprise.fr",
            "Indiquez une adresse email valide, par exemple marie.dupont@entreprise.fr.",
        ),
        ("phone", "", "Indiquez un numéro de téléphone pour que le conseiller vous rappelle."),
        ("phone", "06 12", "Indiquez un numéro de téléphone français valide, par exemple 06 12 34 56 78."),
        ("phone", "+44 20 7946 0958", "Indiquez un numéro de téléphone français valide, par exemple 06 12 34 56 78."),
        ("siret", "", "Indiquez le numéro SIRET de votre entreprise (14 chiffres)."),
        ("siret", "123456782", "Le numéro SIRET doit comporter 14 chiffres."),
        ("siret", "1234567820002A", "Le numéro SIRET doit comporter 14 chiffres."),
        ("siret", "12345678200029", "Ce numéro SIRET n'est pas valide : vérifiez les 14 chiffres."),
        ("postal_code", "", "Indiquez le code postal de votre établissement."),
        ("postal_code", "6900", "Le code postal doit comporter 5 chiffres."),
        ("postal_code", "00000", "Ce code postal n'existe pas : vérifiez-le."),
        ("insee_code", "75056", "Cette commune ne correspond pas au code postal : choisissez-la dans la liste."),
        ("insee_code", "<script>", "Cette commune ne correspond pas au code postal : choisissez-la dans la liste."),
        ("description", "", "Décrivez votre besoin."),
        (
            "description",
            "Besoin d'aide.",
            "Décrivez votre besoin en 20 caractères au moins, pour que le conseiller le comprenne.",
        ),
        (
            "description",
            "a" * 5001,
            "La description ne doit pas dépasser 5\u202f000 caractères (elle en compte 5\u202f001).",
        ),
    ],
)
def test_each_refusal_is_a_422_with_its_message_next_to_its_field(client, app, field, value, message):
    response = post(client, **{field: value})

    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error_of(html, field) == message.replace("'", "&#39;")
    # Linked to its field, marked invalid, announced in the summary, the page title says so.
    assert f'aria-describedby="{field}-error"' in html
    assert 'aria-invalid="true"' in html
    assert re.search(r'<div class="fr-alert fr-alert--error[^"]*" id="erreurs" tabindex="-1" autofocus', html)
    assert f'<a href="#{field}' in html
    assert "<title>Erreur : " in html
    assert stored_count(app) == 0


def test_values_are_kept_on_a_refusal_except_the_traps(client):
    response = post(client, siret="123", full_name="Zoé <b>L'Hôte</b>", telecopie="")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="Zoé &lt;b&gt;L&#39;Hôte&lt;/b&gt;"' in html  # kept, and escaped
    assert 'value="06 12 34 56 78"' in html
    assert 'value="123"' in html
    assert ">" + VALID["description"].replace("'", "&#39;") + "</textarea>" in html
    assert re.search(r'name="telecopie" value=""', html)


def test_all_errors_are_listed_at_once_in_page_order(client):
    response = client.post(FORM, data=open_form(client))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.findall(r'<li><a href="#(\w+)">', html) == [
        "full_name",
        "email",
        "phone",
        "siret",
        "postal_code",
        "description",
    ]
    assert "Le formulaire contient 6 erreurs" in html


def test_a_postal_code_of_several_communes_asks_to_choose_then_accepts_the_choice(client, app):
    response = post(client, postal_code="01400")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error_of(html, "insee_code") == "Ce code postal couvre plusieurs communes : choisissez la vôtre."
    options = re.findall(r'<input type="radio" id="insee_code-\d+" name="insee_code" value="(\w+)"', html)
    assert "01093" in options and len(options) == 10
    assert '<a href="#insee_code-0">' in html
    assert stored_count(app) == 0

    data = {**VALID, "postal_code": "01400", "insee_code": "01093"}
    data.update(csrf_token=csrf_token_from(html), served_at=served_at_from(html))
    chosen = client.post(FORM, data=data)
    assert chosen.status_code == 303
    with app.app_context():
        assert _db.session.scalars(select(Solicitation.insee_code)).one() == "01093"


def test_a_choice_of_another_postal_code_is_refused_and_asked_again(client, app):
    response = post(client, postal_code="01400", insee_code="69123")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error_of(html, "insee_code").startswith("Cette commune ne correspond pas")
    assert 'value="69123" checked' not in html
    assert stored_count(app) == 0


def test_many_communes_are_offered_as_a_list(client):
    html = post(client, postal_code="51300").get_data(as_text=True)  # dozens of communes around Vitry-le-François
    assert '<select class="fr-select fr-select--error" id="insee_code" name="insee_code"' in html
    assert len(re.findall(r"<option value=\"\w+\"", html)) > 10
    assert '<a href="#insee_code">' in html


def test_a_single_commune_is_deduced_and_carried_while_other_fields_are_fixed(client):
    html = post(client, siret="1").get_data(as_text=True)
    assert '<input type="hidden" name="insee_code" value="69123">' in html


# ---------------------------------------------------------------- bots, forgeries, floods


@pytest.mark.parametrize(
    "trap",
    [
        {"telecopie": "0478000000"},
        {"served_at": ""},
        {"served_at": "eyJzIjoicmVjcnV0ZW1lbnQiLCJ0IjowfQ.forged"},
    ],
)
def test_a_bot_gets_a_neutral_422_and_nothing_is_stored(client, app, trap):
    response = post(client, **trap)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Votre demande n&#39;a pas pu être envoyée" in html
    assert "<title>Erreur : " in html
    assert "robot" not in html.lower() and "telecopie" not in html.split("<form")[0]
    assert stored_count(app) == 0


def test_a_form_posted_too_fast_is_refused_then_accepted_later(make_app):
    from app.public.forms import sign_served_at

    other = make_app(FORM_MIN_SECONDS=3)
    with other.test_client() as client:
        response = post(client)
        assert response.status_code == 422
        assert "Votre demande n&#39;a pas pu être envoyée" in response.get_data(as_text=True)
        with other.test_request_context():
            earlier = sign_served_at(SUBJECT, now=time.time() - 4)
            for_another_subject = sign_served_at("autre-sujet", now=time.time() - 4)
        assert post(client, served_at=for_another_subject).status_code == 422
        assert post(client, served_at=earlier).status_code == 303


def test_a_post_without_csrf_token_is_refused(client, app):
    data = {**VALID, "served_at": open_form(client)["served_at"]}
    response = client.post(FORM, data=data)
    assert response.status_code == 400
    assert "Formulaire expiré" in response.get_data(as_text=True)
    assert stored_count(app) == 0


@pytest.fixture
def rate_limited(make_app):
    """An app with the limiter on. Flask-Limiter keeps ``enabled`` and its counters on the one
    ``limiter`` object every app shares, so they are put back for the tests that follow."""
    from app.extensions import limiter

    was_enabled = limiter.enabled
    other = make_app(RATELIMIT_ENABLED=True, PUBLIC_FORM_RATE_LIMIT="2 per minute")
    try:
        yield other
    finally:
        limiter.reset()
        limiter.enabled = was_enabled


def test_posts_beyond_the_limit_get_a_french_429(rate_limited):
    with rate_limited.test_client() as client:
        statuses = [post(client, siret="1").status_code for _ in range(3)]
        assert statuses == [422, 422, 429]
        refused = post(client)
        assert refused.status_code == 429
        assert "Trop de demandes envoyées" in refused.get_data(as_text=True)
        assert client.get(FORM).status_code == 200  # reading the form is not limited
