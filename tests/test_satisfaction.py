"""The satisfaction survey: sent 10 days after the first « Aide proposée », once; its signed
link opens the form without an account; a forged or tampered link gets a clear page; one
answer per need, updated when the business answers again."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app.models import OutboundEmail, SatisfactionAnswer
from app.services.messaging.links import expert_token, need_id_for_survey_token, survey_token
from app.services.requests.followup import run_followup
from app.services.transactions import transaction
from tests.factories import make_helped_need
from tests.helpers import body, csrf_token_from


def surveys(now=None) -> list[str]:
    with transaction():
        return [item.key for item in run_followup(now) if item.step == "satisfaction"]


def test_the_survey_goes_once_ten_days_after_help_was_offered(db):
    soon = make_helped_need(days_ago=9.9)
    due = make_helped_need(days_ago=10.1)
    long_ago = make_helped_need(days_ago=40)  # past the catch-up days: not asked months later
    assert surveys() == [f"need:{due.id}:satisfaction"]
    assert surveys() == []
    assert soon.id and long_ago.id
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"need:{due.id}:satisfaction"))
    assert email.recipient == due.contact.email
    assert email.subject.startswith("Fin du suivi de votre demande « ")
    assert "Avez-vous été rappelé(e) par au moins un conseiller ?" in email.body_text
    token = re.search(r"/satisfaction/([^?\s]+)\?reponse=oui", email.body_text).group(1)
    assert need_id_for_survey_token(token) == due.id  # signed for this need (tokens carry their time)


def answer(client, token: str, data: dict, *, query: str = ""):
    page = client.get(f"/satisfaction/{token}{query}")
    return client.post(f"/satisfaction/{token}", data={**data, "csrf_token": csrf_token_from(body(page))})


def test_the_link_prefills_the_first_answer_and_one_answer_per_need_is_kept(client, db):
    need = make_helped_need()
    token = survey_token(need.id)
    page = body(client.get(f"/satisfaction/{token}?reponse=oui"))
    assert 'value="oui" checked' in page
    assert db.session.scalar(select(func.count(SatisfactionAnswer.id))) == 0  # opening records nothing

    response = answer(client, token, {"contacted": "oui", "useful": "oui", "outcomes": ["discover", "choice"]})
    assert response.status_code == 200
    assert "Merci pour votre avis" in body(response)
    response = answer(client, token, {"contacted": "non", "comment": "  Finalement personne.  "})
    assert response.status_code == 200
    db.session.expire_all()
    [stored] = db.session.scalars(select(SatisfactionAnswer)).all()
    assert (stored.need_id, stored.contacted, stored.useful, stored.outcomes, stored.comment) == (
        need.id,
        False,
        None,
        [],
        "Finalement personne.",
    )
    assert "Vous avez déjà répondu" in body(client.get(f"/satisfaction/{token}"))


def test_refusals_are_french_and_store_nothing(client, db):
    need = make_helped_need()
    token = survey_token(need.id)
    missing = answer(client, token, {"useful": "oui"})
    assert missing.status_code == 422
    assert "Indiquez si un conseiller vous a rappelé(e)." in body(missing)
    unknown = answer(client, token, {"contacted": "oui", "outcomes": ["pirater"]})
    assert unknown.status_code == 422
    assert "Réponse inconnue" in body(unknown)
    too_long = answer(client, token, {"contacted": "oui", "comment": "x" * 2001})
    assert too_long.status_code == 422
    assert "ne doit pas dépasser 2000 caractères" in body(too_long)
    no_token = client.post(f"/satisfaction/{token}", data={"contacted": "oui"})
    assert no_token.status_code in (400, 422)
    assert db.session.scalar(select(func.count(SatisfactionAnswer.id))) == 0


def test_a_forged_or_tampered_link_gets_a_clear_page(client, db):
    need = make_helped_need()
    token = survey_token(need.id)
    for bad in (token[:-3] + "abc", "n'importe-quoi", expert_token(need.matches[0])):
        response = client.get(f"/satisfaction/{bad}")
        assert response.status_code == 404, bad
        assert "Ce lien n&#39;est pas valide" in body(response)
    gone = survey_token(999_999)
    response = client.get(f"/satisfaction/{gone}")
    assert response.status_code == 404
    assert "cette demande n&#39;existe plus" in body(response)


def test_answers_are_columns_of_the_staff_exports_and_hidden_from_referents(app, admin_client, db):
    from flask_login import login_user

    from app.admin.requests.common import satisfaction_text
    from app.models import User
    from app.services.requests.satisfaction import record_answer

    need = make_helped_need()
    with transaction():
        answer = record_answer(need, contacted=True, useful=False, outcomes=["choice"], comment="Rappel rapide.")
    expected = "rappelé(e) : oui ; utile : non ; a permis : faciliter un choix ; commentaire : Rappel rapide."
    needs_csv = body(admin_client.get("/admin/need/export/csv/"))
    assert ",Avis de l'entreprise," in needs_csv.splitlines()[0] + ","
    assert expected in needs_csv
    matches_csv = body(admin_client.get("/admin/match/export/csv/"))
    assert matches_csv.splitlines()[0].endswith(",Avis de l'entreprise")
    assert matches_csv.count(expected) == 2  # both of the need's matches

    referent = User(
        email="ref@cci.example", role="referent", institution_id=need.matches[0].expert.antenne.institution_id
    )
    with app.test_request_context():
        login_user(referent)
        assert satisfaction_text(answer) == ""  # not shared with partners (sharing is staff's to decide)


def test_staff_share_an_answer_from_the_need_page_and_partners_then_see_it(app, admin_client, db):
    from flask_login import login_user

    from app.admin.requests.common import satisfaction_text
    from app.models import User
    from app.services.requests.satisfaction import record_answer

    need = make_helped_need()
    page_url = f"/admin/need/details/?id={need.id}"
    assert "Avis de l&#39;entreprise" not in body(admin_client.get(page_url))  # no answer yet
    refused = admin_client.post(
        "/admin/need/partager-avis/",
        data={"id": need.id, "csrf_token": csrf_token_from(body(admin_client.get(page_url)))},
        follow_redirects=True,
    )
    assert "Avis non partagé : L&#39;entreprise n&#39;a pas encore répondu" in body(refused)

    with transaction():
        answer = record_answer(need, contacted=True, useful=True, comment="Merci !")
    page = body(admin_client.get(page_url))
    assert "rappelé(e) : oui ; utile : oui ; commentaire : Merci !" in page
    shared = admin_client.post(
        "/admin/need/partager-avis/", data={"id": need.id, "csrf_token": csrf_token_from(page)}, follow_redirects=True
    )
    assert "Avis partagé avec les experts" in body(shared)
    assert "Partagé le" in body(shared)
    db.session.expire_all()
    answer = db.session.get(SatisfactionAnswer, answer.id)
    assert answer.shared_at is not None

    referent = User(
        email="ref@cci.example", role="referent", institution_id=need.matches[0].expert.antenne.institution_id
    )
    with app.test_request_context():
        login_user(referent)
        assert satisfaction_text(answer) == "rappelé(e) : oui ; utile : oui ; commentaire : Merci !"


def test_sharing_needs_a_csrf_token(admin_client, db):
    need = make_helped_need()
    assert admin_client.post("/admin/need/partager-avis/", data={"id": need.id}).status_code == 400


def test_referents_cannot_share(referent_client, db):
    need = make_helped_need()
    assert referent_client.post("/admin/need/partager-avis/", data={"id": need.id}).status_code in (400, 403, 404)
