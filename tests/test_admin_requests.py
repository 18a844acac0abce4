"""The back office's request views: solicitations, needs, matches — lists, details, exports,
access, query counts, and the two solicitation actions through the service verbs."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import Match, Need, Solicitation
from tests.factories import (
    make_routed,
    make_solicitation,
    subject,
)
from tests.helpers import body, csrf_token_from, filter_arg, post_action

ENDPOINTS = ["solicitation", "need", "match"]


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_anonymous_visitors_are_sent_to_the_login_page(client, endpoint):
    for url in (f"/admin/{endpoint}/", f"/admin/{endpoint}/export/csv/", f"/admin/{endpoint}/details/?id=1"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/connexion")


# Referents read their experts' needs and matches (tests/test_permissions.py); the desk is staff's.
@pytest.mark.parametrize("endpoint", ["solicitation"])
def test_referents_are_refused(referent_client, endpoint):
    client = referent_client
    assert client.get(f"/admin/{endpoint}/").status_code == 403
    assert client.get(f"/admin/{endpoint}/export/csv/").status_code == 403
    assert client.post(f"/admin/{endpoint}/action/", data={"action": "abandonner", "rowid": "1"}).status_code in (
        400,
        403,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_views_are_read_only(admin_client, db, endpoint):
    assert admin_client.get(f"/admin/{endpoint}/new/").status_code == 302
    assert admin_client.get(f"/admin/{endpoint}/edit/?id=1").status_code == 302


def test_the_menu_groups_the_views_under_demandes(admin_client):
    page = body(admin_client.get("/admin/"))
    for label in ("Demandes", "Sollicitations", "Besoins", "Mises en relation"):
        assert label in page


# ---------------------------------------------------------------- lists


def test_the_solicitation_list_shows_what_came_in(admin_client, db, book):
    make_solicitation(full_name="Alix Durand")
    make_routed(1)
    page = body(admin_client.get("/admin/solicitation/"))
    for text in (
        "Alix Durand",
        "@boulangerie.example",
        "Villeurbanne (69266)",
        "Recruter",
        "À qualifier",
        "Transmise",
        "Mode revue",
        "printemps-2026",
        "Transmettre aux experts",
        "Abandonner",
    ):
        assert text in page, text
    assert page.index("Transmettre aux experts") < page.index("Abandonner")
    assert 'name="search"' in page
    for label in ("Statut", "Sujet", "Date"):
        assert label in page


def test_solicitation_search_and_filters(admin_client, db, book):
    kept = make_solicitation(full_name="Alix Durand")
    make_solicitation(full_name="Bastien Morel")
    for query in ("durand", kept.email, kept.siret, kept.company_name):
        page = body(admin_client.get("/admin/solicitation/", query_string={"search": query}))
        assert "Alix Durand" in page and "Bastien Morel" not in page, query
    make_routed(1)
    page = body(admin_client.get(f"/admin/solicitation/?flt0_{filter_arg('solicitation', 'Statut')}=processed"))
    assert "Alix Durand" not in page and "Bastien Morel" not in page and "Transmise" in page
    recruit = subject("recrutement").id
    page = body(admin_client.get(f"/admin/solicitation/?flt0_{filter_arg('solicitation', 'Sujet')}={recruit}"))
    assert "Alix Durand" in page and "Bastien Morel" in page


def test_solicitation_date_filter(admin_client, db, book):
    from datetime import datetime, timedelta

    make_solicitation(full_name="Alix Durand")
    arg = filter_arg("solicitation", "Date")  # the first « Date » filter: « après le »
    for days, shown in ((-1, True), (1, False)):
        when = (datetime.now() + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
        page = body(admin_client.get("/admin/solicitation/", query_string={f"flt0_{arg}": when}))
        assert ("Alix Durand" in page) is shown


def test_need_and_match_search(admin_client, db, book):
    first, second = make_routed(2)
    company = first.facility.company.name
    for query in (company, first.facility.siret, first.contact.email):
        page = body(admin_client.get("/admin/need/", query_string={"search": query}))
        assert company in page and second.facility.company.name not in page, query
    page = body(admin_client.get("/admin/match/", query_string={"search": "camille"}))
    assert "Camille Martin" in page and "Dominique Petit" not in page


def test_the_need_list_counts_matches(admin_client, db, book):
    from app.services.requests.matches import change_match_status

    need = make_routed(1)[0]
    change_match_status(need.matches[0], "taking_care")
    response = admin_client.get("/admin/need/")
    assert response.status_code == 200
    page = body(response)
    for text in ("Recruter", need.facility.company.name, "Villeurbanne (69266)", "Prise en charge"):
        assert text in page, text
    text = body(admin_client.get("/admin/need/export/csv/"))
    header, row = text.splitlines()[:2]
    assert header.startswith("Date,Sujet,Entreprise,SIRET,Commune,Statut,Mises en relation,Dont positives")
    assert ",Prise en charge,2,1," in row
    arg = filter_arg("need", "Statut")
    assert need.facility.company.name in body(admin_client.get(f"/admin/need/?flt0_{arg}=taking_care"))
    assert need.facility.company.name not in body(admin_client.get(f"/admin/need/?flt0_{arg}=done"))
    arg = filter_arg("need", "Sujet")
    assert need.facility.company.name in body(admin_client.get(f"/admin/need/?flt0_{arg}={need.subject_id}"))
    other = subject("formation")
    assert need.facility.company.name not in body(admin_client.get(f"/admin/need/?flt0_{arg}={other.id}"))


def test_the_match_list_shows_experts_and_why(admin_client, db, book):
    need = make_routed(1)[0]
    page = body(admin_client.get("/admin/match/"))
    for text in (
        "Camille Martin",
        "Dominique Petit",
        "CCI Lyon Métropole",
        "France Travail",
        "departement:69, zone de l&#39;antenne",
        "En attente",
        need.facility.company.name,
        "Recruter",
    ):
        assert text in page, text
    institution_id = book["expert"].antenne.institution_id
    page = body(admin_client.get(f"/admin/match/?flt0_{filter_arg('match', 'Institution')}={institution_id}"))
    assert "Camille Martin" in page and "Dominique Petit" not in page
    page = body(admin_client.get(f"/admin/match/?flt0_{filter_arg('match', 'Statut')}=done"))
    assert "Camille Martin" not in page


@pytest.mark.parametrize(
    ("endpoint", "header", "row"),
    [
        (
            "solicitation",
            "Date,Sujet,Nom,Email,Téléphone,SIRET,Entreprise,Code postal,Commune,Statut,Points à vérifier,"
            "Provenance,Page d'origine,Campagne",
            "Villeurbanne (69266),Transmise,Mode revue : toute demande attend l'équipe.,"
            "Site Place des Entreprises,,printemps-2026,",
        ),
        ("need", "Date,Sujet,Entreprise,SIRET,Commune,Statut", "Villeurbanne (69266),En attente,2,0"),
        (
            "match",
            "Date,Sujet du besoin,Entreprise,Expert,Institution,Statut,Entrée de zone",
            'Camille Martin,CCI Lyon Métropole,En attente,"departement:69, zone de l\'antenne"',
        ),
    ],
)
def test_csv_exports(admin_client, db, book, endpoint, header, row):
    make_routed(1)
    response = admin_client.get(f"/admin/{endpoint}/export/csv/")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = body(response)
    assert text.splitlines()[0].startswith(header)
    assert row in text


# ---------------------------------------------------------------- details


def test_solicitation_details_link_to_the_need(admin_client, db, book):
    need = make_routed(1)[0]
    solicitation = need.solicitation
    response = admin_client.get(f"/admin/solicitation/details/?id={solicitation.id}")
    assert response.status_code == 200
    page = body(response)
    for text in (
        solicitation.full_name,
        solicitation.phone,
        "Nous cherchons à recruter",
        "Transmise le",
        f'href="/admin/need/details/?id={need.id}"',
        "Historique des modifications",
    ):
        assert text in page, text
    # Already sent: the page offers no action on it.
    assert 'value="transmettre"' not in page


def test_waiting_solicitation_details_offer_the_actions(admin_client, db, book):
    solicitation = make_solicitation()
    page = body(admin_client.get(f"/admin/solicitation/details/?id={solicitation.id}"))
    assert "Pas encore" in page
    assert "Mode revue : toute demande attend l&#39;équipe." in page
    assert 'value="transmettre"' in page and 'value="abandonner"' in page


def test_need_details_show_its_matches(admin_client, db, book):
    need = make_routed(1)[0]
    response = admin_client.get(f"/admin/need/details/?id={need.id}")
    assert response.status_code == 200
    page = body(response)
    for text in (
        "Camille Martin",
        "CCI Lyon — Centre",
        "France Travail",
        "En attente",
        "departement:69, zone de l&#39;antenne",
        "Prise en charge le",
        need.contact.email,
        f'href="/admin/solicitation/details/?id={need.solicitation_id}"',
        f'href="/admin/match/details/?id={need.matches[0].id}"',
    ):
        assert text in page, text


def test_match_details_render(admin_client, db, book):
    match = make_routed(1)[0].matches[0]
    response = admin_client.get(f"/admin/match/details/?id={match.id}")
    assert response.status_code == 200
    page = body(response)
    assert f'href="/admin/need/details/?id={match.need_id}"' in page
    assert "Villeurbanne (69266)" in page and "Historique des modifications" in page


def test_unknown_records_are_404(admin_client, db):
    for endpoint in ENDPOINTS:
        assert admin_client.get(f"/admin/{endpoint}/details/?id=999999").status_code == 404
        assert admin_client.get(f"/admin/{endpoint}/details/?id=abc").status_code == 404


# ---------------------------------------------------------------- actions


def test_transmettre_routes_a_waiting_solicitation(admin_client, db, book, admin_user):
    solicitation = make_solicitation()
    response = post_action(admin_client, "solicitation", "transmettre", [solicitation.id], follow_redirects=True)
    assert response.status_code == 200
    assert "1 demande(s) transmise(s) aux experts." in body(response)
    db.session.expire_all()
    solicitation = db.session.get(Solicitation, solicitation.id)
    assert solicitation.status == "processed"
    assert {m.expert_id for m in solicitation.need.matches} == {expert.id for expert in book["experts"]}
    # The audit trail names the staff member who sent it.
    page = body(admin_client.get(f"/admin/solicitation/details/?id={solicitation.id}"))
    assert admin_user.email in page


def test_transmettre_from_the_details_page(admin_client, db, book):
    solicitation = make_solicitation()
    url = f"/admin/solicitation/details/?id={solicitation.id}"
    page = admin_client.get(url)
    response = admin_client.post(
        "/admin/solicitation/action/",
        data={
            "action": "transmettre",
            "rowid": str(solicitation.id),
            "url": url,
            "csrf_token": csrf_token_from(body(page)),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(url)
    db.session.expire_all()
    assert db.session.get(Solicitation, solicitation.id).status == "processed"


def test_transmettre_refuses_a_canceled_solicitation_in_french(admin_client, db, book):
    solicitation = make_solicitation(status="canceled")
    response = post_action(admin_client, "solicitation", "transmettre", [solicitation.id], follow_redirects=True)
    assert response.status_code == 200
    assert "a été abandonnée : elle ne peut plus être transmise" in body(response)
    assert "transmise(s) aux experts" not in body(response)
    db.session.expire_all()
    assert db.session.get(Solicitation, solicitation.id).status == "canceled"
    assert db.session.scalar(select(func.count(Need.id))) == 0
    assert db.session.scalar(select(func.count(Match.id))) == 0


def test_transmettre_without_expert_changes_nothing(admin_client, db):
    solicitation = make_solicitation()
    response = post_action(admin_client, "solicitation", "transmettre", [solicitation.id], follow_redirects=True)
    assert "Aucun expert ne couvre le sujet" in body(response)
    db.session.expire_all()
    assert db.session.get(Solicitation, solicitation.id).status == "in_progress"
    assert db.session.scalar(select(func.count(Need.id))) == 0


def test_one_refusal_does_not_stop_the_others(admin_client, db, book):
    waiting = make_solicitation()
    canceled = make_solicitation(status="canceled")
    page = body(
        post_action(admin_client, "solicitation", "transmettre", [waiting.id, canceled.id], follow_redirects=True)
    )
    assert "1 demande(s) transmise(s) aux experts." in page
    assert "ne peut plus être transmise" in page
    db.session.expire_all()
    assert db.session.get(Solicitation, waiting.id).status == "processed"


def test_abandonner_cancels_a_waiting_solicitation(admin_client, db, book):
    solicitation = make_solicitation()
    response = post_action(admin_client, "solicitation", "abandonner", [solicitation.id], follow_redirects=True)
    assert "1 demande(s) abandonnée(s)." in body(response)
    db.session.expire_all()
    solicitation = db.session.get(Solicitation, solicitation.id)
    assert solicitation.status == "canceled"
    assert solicitation.canceled_at is not None
    assert db.session.scalar(select(func.count(Need.id))) == 0
    # A sent one cannot be abandoned: the message says why.
    need = make_routed(1)[0]
    response = post_action(admin_client, "solicitation", "abandonner", [need.solicitation_id], follow_redirects=True)
    assert "a déjà été transmise aux experts" in body(response)
    db.session.expire_all()
    assert db.session.get(Solicitation, need.solicitation_id).status == "processed"


def test_abandonner_comme_spam_keeps_the_reason(admin_client, db, book):
    solicitation = make_solicitation()
    response = post_action(admin_client, "solicitation", "spam", [solicitation.id], follow_redirects=True)
    assert "abandonnée(s) comme spam" in body(response)
    db.session.expire_all()
    assert db.session.get(Solicitation, solicitation.id).qualification_notes[-1] == "Abandonnée : spam"


def test_an_action_without_csrf_token_is_refused(admin_client, db, book):
    solicitation = make_solicitation()
    response = admin_client.post(
        "/admin/solicitation/action/", data={"action": "abandonner", "rowid": str(solicitation.id)}
    )
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Solicitation, solicitation.id).status == "in_progress"


# ---------------------------------------------------------------- query counts


def _queries_for(client, count_queries, url: str) -> int:
    with count_queries() as counter:
        response = client.get(url)
        assert response.status_code == 200
        body(response)  # exports stream: count the queries of the whole body
    return counter.count


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("suffix", ["", "export/csv/"])
def test_lists_and_exports_do_not_query_per_row(admin_client, db, book, count_queries, endpoint, suffix):
    make_routed(3)
    make_solicitation()
    few = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/{suffix}")
    make_routed(17)
    make_solicitation()
    many = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/{suffix}")
    assert few == many
