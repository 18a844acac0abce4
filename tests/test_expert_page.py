"""The expert's page opened from the emailed link: what it shows, the status buttons, and the
French pages for a link that was tampered with, has expired or was revoked."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous.timed import TimestampSigner

from app.extensions import db as _db
from app.models import AuditEvent, Match, Need
from app.services.addressbook.addressbook import delete_expert
from app.services.messaging.links import expert_token
from tests.factories import ExpertFactory, make_need
from tests.helpers import csrf_token_from


@pytest.fixture
def need(db):
    """Three experts on a need; the first one opens the page, the others have answered."""
    need = make_need(3, statuses=("quo", "taking_care", "not_for_me"))
    first = need.matches[0].expert
    first.full_name, first.email = "Claire Martin", "claire.martin@cci.example"
    _db.session.commit()
    return need


@pytest.fixture
def url(need):
    return f"/expert/{expert_token(need.matches[0])}"


def _forms(html: str) -> list[str]:
    """The ``status`` each form of the page posts, in page order."""
    return re.findall(r'<input type="hidden" name="status" value="([a-z_]+)">', html)


def _post(client, url: str, status: str, **extra):
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    return client.post(url, data={"status": status, "csrf_token": token, **extra})


def _status(match_id: int) -> str:
    _db.session.expire_all()
    return _db.session.get(Match, match_id).status


def test_the_page_shows_the_need_the_company_and_the_contact(client, need, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<h1>Recruter un ou plusieurs salariés</h1>" in html
    assert "Nous cherchons un apprenti boulanger." in html and "Nous n&#39;avons jamais embauché." in html
    assert "Lyon (69001)" in html
    assert "Boulangerie Durand" in html and "12345678900017" in html
    assert "Julie Durand" in html
    assert 'href="mailto:julie@durand.example"' in html
    assert 'href="tel:+33612345678">06 12 34 56 78</a>' in html
    assert re.search(r"Reçue le \d{1,2} \w+ 20\d\d à \d\dh\d\d", html)
    assert "Votre statut : <span" in html and "En attente</span>" in html
    assert "Demande transmise à Claire Martin" in html


def test_the_other_experts_are_listed_with_their_status_but_not_their_coordinates(client, need, url):
    html = client.get(url).get_data(as_text=True)
    _, second, third = need.matches
    for other, label in ((second, "Prise en charge"), (third, "Refusé")):
        expert = other.expert
        who = f"<strong>{expert.full_name}</strong>, {expert.antenne.name} ({expert.antenne.institution.name}) :"
        assert re.search(re.escape(who) + r"\s*<span [^>]*>" + label + "</span>", html)
        assert expert.email not in html
    assert "Statut du besoin : <strong>Prise en charge</strong>" in html


def test_a_lone_expert_is_told_so(client, db):
    lone = make_need(1)
    html = client.get(f"/expert/{expert_token(lone.matches[0])}").get_data(as_text=True)
    assert "Vous êtes le seul expert sollicité pour ce besoin." in html


@pytest.mark.parametrize(
    ("status", "forms", "labels"),
    [
        ("quo", ["taking_care", "not_for_me"], ["Je prends en charge", "Ce n&#39;est pas pour moi"]),
        (
            "taking_care",
            ["done", "done_no_help", "done_not_reachable", "quo"],
            ["Aide proposée", "Pas d&#39;aide disponible", "Entreprise injoignable", "Annuler ma prise en charge"],
        ),
        ("done", ["taking_care", "quo"], ["Annuler la clôture", "Annuler ma prise en charge"]),
        ("done_no_help", ["taking_care", "quo"], ["Annuler la clôture", "Annuler ma prise en charge"]),
        ("not_for_me", ["quo"], ["Annuler mon refus"]),
    ],
)
def test_one_form_per_allowed_transition_with_its_french_label(client, db, status, forms, labels):
    match = make_need(1, statuses=(status,)).matches[0]
    html = client.get(f"/expert/{expert_token(match)}").get_data(as_text=True)
    assert _forms(html) == forms
    buttons = re.findall(r"<button [^>]*>([^<]+)</button>", html)
    assert [button for button in buttons if button != "Envoyer le message"] == labels  # not the thread's


def test_the_expert_takes_care_then_closes_and_the_need_follows(client, need, url):
    match_id, need_id = need.matches[0].id, need.id
    response = _post(client, url, "taking_care")
    assert response.status_code == 303
    assert response.headers["Location"] == url
    assert _status(match_id) == "taking_care"

    page = client.get(url).get_data(as_text=True)
    assert "C&#39;est enregistré : votre statut est maintenant « Prise en charge »." in page
    assert "appelez Julie Durand au" in page

    assert _post(client, url, "done").status_code == 303
    assert _status(match_id) == "done"
    assert _db.session.get(Need, need_id).status == "done"
    events = _db.session.query(AuditEvent).filter_by(object_type="Match", object_id=match_id).all()
    assert {event.actor for event in events if event.action == "update"} == {"expert claire.martin@cci.example (lien)"}


@pytest.mark.parametrize("target", ["done", "done_no_help", "done_not_reachable"])
def test_each_closing_button_closes_and_can_be_undone(client, need, url, target):
    match_id = need.matches[0].id
    _post(client, url, "taking_care")
    assert _post(client, url, target).status_code == 303
    assert _status(match_id) == target
    assert _db.session.get(Need, need.id).status == target
    assert _post(client, url, "taking_care").status_code == 303  # « Annuler la clôture »
    assert _status(match_id) == "taking_care"
    assert _db.session.get(Need, need.id).status == "taking_care"


def test_not_for_me_and_its_undo(client, need, url):
    match_id = need.matches[0].id
    assert _post(client, url, "not_for_me").status_code == 303
    assert _status(match_id) == "not_for_me"
    assert _db.session.get(Need, need.id).status == "taking_care"  # the second expert's
    assert _post(client, url, "quo").status_code == 303
    assert _status(match_id) == "quo"


def test_posting_the_current_status_again_is_not_an_error(client, need, url):
    _post(client, url, "taking_care")
    assert _post(client, url, "taking_care").status_code == 303
    assert _status(need.matches[0].id) == "taking_care"


@pytest.mark.parametrize("status", ["done", "done_not_reachable", "n_importe_quoi", ""])
def test_a_status_the_table_does_not_offer_is_refused_with_422(client, need, url, status):
    response = _post(client, url, status)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Votre réponse n'a pas été enregistrée" in html
    assert "Impossible de passer" in html or "Statut inconnu" in html
    assert _status(need.matches[0].id) == "quo"


def test_a_post_without_the_csrf_token_is_refused(client, need, url):
    client.get(url)
    response = client.post(url, data={"status": "taking_care"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Réponse non enregistrée" in html and "Rechargez la page" in html
    assert _status(need.matches[0].id) == "quo"


def test_a_tampered_token_shows_nothing_of_the_need(client, need, url):
    token = url.rsplit("/", 1)[1]
    position = len(token) // 2
    tampered = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    csrf = csrf_token_from(client.get(url).get_data(as_text=True))
    for method in (client.get, client.post):
        response = method(f"/expert/{tampered}", data={"status": "taking_care", "csrf_token": csrf})
        assert response.status_code == 404
        html = response.get_data(as_text=True)
        assert "Ce lien n&#39;est pas valide" in html
        assert "Boulangerie Durand" not in html and "Julie Durand" not in html and "apprenti" not in html
    assert _status(need.matches[0].id) == "quo"


def test_an_expired_token_gets_the_french_expired_page(client, need, monkeypatch, app):
    days = app.config["EXPERT_LINK_MAX_AGE_DAYS"] + 1
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - days * 86400)
    old = expert_token(need.matches[0])
    monkeypatch.undo()
    response = client.get(f"/expert/{old}")
    assert response.status_code == 410
    html = response.get_data(as_text=True)
    assert "Ce lien a expiré" in html and "Recevoir un nouveau lien par courriel" in html
    assert "Boulangerie Durand" not in html


def test_a_deleted_expert_gets_the_revoked_page(client, need, url):
    delete_expert(need.matches[0].expert)
    response = client.get(url)
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Ce lien n&#39;est plus actif" in html
    assert "Boulangerie Durand" not in html


def test_a_removed_match_gets_the_revoked_page(client, need, url):
    _db.session.delete(need.matches[0])
    _db.session.commit()
    response = client.get(url)
    assert response.status_code == 404
    assert "Ce lien n&#39;est plus actif" in response.get_data(as_text=True)


def test_a_match_given_to_another_expert_revokes_the_first_link(client, need, url):
    need.matches[0].expert = ExpertFactory()  # staff gave it to a colleague
    _db.session.commit()
    response = client.get(url)
    assert response.status_code == 404
    assert "Boulangerie Durand" not in response.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["valid", "tampered"])
def test_the_token_in_the_url_is_neither_sent_on_nor_kept_nor_indexed(client, url, kind):
    target = url if kind == "valid" else url[:-3] + "xyz"
    response = client.get(target)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "noindex" in response.headers["X-Robots-Tag"]


def test_the_page_is_rate_limited_per_address_when_enabled(make_app, need):
    limited = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
    with limited.app_context():
        url = f"/expert/{expert_token(_db.session.get(Match, need.matches[0].id))}"
    with limited.test_client() as client:
        statuses = [client.get(url).status_code for _ in range(60)]
        assert statuses == [200] * 60
        refused = client.get(url)
    assert refused.status_code == 429
    html = refused.get_data(as_text=True)
    assert "Merci de patienter" in html and "Boulangerie Durand" not in html
    assert refused.headers["Referrer-Policy"] == "no-referrer"
