"""The qualification desk through the back office: the details page of a request held for
review, its forms (correct the subject, send to ticked and added experts, cancel with a
reason, internal notes), the bulk cancel actions, access, CSRF and the list's query count."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import current_app
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from app.models import Match, Need, OutboundEmail, Solicitation, StaffNote
from app.services.transactions import transaction
from tests.factories import make_solicitation, subject
from tests.helpers import body, csrf_token_from

LYON = ("69123", "69001")


def details_url(solicitation_id: int) -> str:
    return f"/admin/solicitation/details/?id={solicitation_id}"


def held(db, name: str = "Camille Martin", **fields) -> Solicitation:
    """A request from Lyon waiting for staff, as review mode leaves it."""
    return make_solicitation(full_name=name, postal_code=LYON[1], insee_code=LYON[0], **fields)


def page_of(client, solicitation: Solicitation, **args) -> str:
    response = client.get("/admin/solicitation/details/", query_string={"id": solicitation.id, **args})
    assert response.status_code == 200
    return body(response)


def post(client, solicitation: Solicitation, endpoint: str, data: dict, *, token: str | None = None):
    token = token or csrf_token_from(page_of(client, solicitation))
    return client.post(
        f"/admin/solicitation/qualifier/{endpoint}/", data={"csrf_token": token, "id": solicitation.id, **data}
    )


def follow(client, response) -> str:
    """The page a 303 leads to, with its flashed messages."""
    assert response.status_code == 303, body(response)[:500]
    location = response.headers["Location"]
    return body(client.get(location))


def fresh(db, solicitation: Solicitation) -> Solicitation:
    db.session.expire_all()
    return db.session.get(Solicitation, solicitation.id)


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def email_keys(db) -> set[str]:
    return set(db.session.scalars(select(OutboundEmail.key)))


# ---------------------------------------------------------------- the page


def test_a_held_request_shows_why_it_waits_and_the_experts_routing_suggests(admin_client, db, desk_book):
    solicitation = held(db)
    held(db, email=solicitation.email)  # a second open request from the same address
    page = page_of(admin_client, solicitation)
    for text in (
        "Pourquoi elle attend l'équipe",
        "Mode revue : toute demande attend l&#39;équipe.",
        '<span class="badge badge-warning">Autre demande en cours</span>',
        "Corriger le sujet",
        "Envoyer aux experts",
        "Alice CCI",
        "CCI — Rhône",
        "CCI Lyon Métropole",
        "département:69 (Rhône), zone de l&#39;antenne",
        "Bruno FT",
        "national, zone de l&#39;antenne",
        "Ajouter un expert hors suggestion",
        "Abandonner la demande",
        "Hors du champ du service",
        "Pas une entreprise",
        "Demande incomplète",
        "Spam",
        "Notes internes",
    ):
        assert text in page, text
    recruitment = subject("recrutement").id
    for expert in (desk_book["alice"], desk_book["bruno"]):
        box = re.search(rf'<input[^>]*id="expert-{recruitment}-{expert.id}"[^>]*>', page).group(0)
        assert 'name="experts-' in box and " checked" in box
    assert "Denis Marseille" not in page  # outside the rule: only added by hand
    # The current subject is preselected in both subject lists.
    assert page.count(f'<option value="{recruitment}" selected>') == 2


def test_choosing_two_subjects_shows_the_experts_of_each(admin_client, db, desk_book):
    solicitation = held(db)
    training = subject("formation").id
    page = page_of(admin_client, solicitation, sujets=[subject("recrutement").id, training])
    assert "Besoin 1 : « Recruter un ou plusieurs salariés »" in page
    assert "Besoin 2 : « Former mes salariés ou me former »" in page
    assert f'id="expert-{training}-{desk_book["chloe"].id}"' in page
    # A subject nobody covers says so; garbage in the URL is an explanation, not a 500.
    page = page_of(admin_client, solicitation, sujets=[subject("cybersecurite").id])
    assert "Aucun expert ne couvre ce sujet sur cette commune" in page
    page = page_of(admin_client, solicitation, sujets=["abc", "999999"])
    assert "Sujet inconnu (#999999)" in page and "Alice CCI" in page


def test_an_archived_subject_asks_for_another(admin_client, db, desk_book):
    from app.models.base import utcnow

    solicitation = held(db, subject_slug="export")
    archived = subject("export")
    archived.archived_at = utcnow()
    db.session.commit()
    page = page_of(admin_client, solicitation)
    assert '<option value="">« Vendre à l&#39;international » (archivé) — choisir un sujet</option>' in page
    assert "Envoyer aux experts" in page and 'id="send-form"' not in page  # choose a subject first
    page = page_of(admin_client, solicitation, sujets=subject("recrutement").id)
    assert 'id="send-form"' in page and "Alice CCI" in page


def test_a_sent_request_shows_its_needs_and_no_forms(admin_client, db, desk_book, admin_user):
    from app.services.requests.qualification import send_solicitation

    solicitation = held(db)
    (need,) = send_solicitation(solicitation, [(subject("recrutement"), [desk_book["alice"].id])], user=admin_user)
    page = page_of(admin_client, solicitation)
    assert f'href="/admin/need/details/?id={need.id}"' in page
    assert "Transmise aux experts" in page
    for form in ("qualifier/envoyer", "qualifier/sujet", "qualifier/abandonner"):
        assert form not in page
    assert "qualifier/note" in page  # notes stay open


# ---------------------------------------------------------------- correct the subject


def test_correct_the_subject(admin_client, db, desk_book):
    solicitation = held(db)
    response = post(admin_client, solicitation, "sujet", {"subject_id": subject("formation").id})
    assert response.headers["Location"].startswith(details_url(solicitation.id))
    page = follow(admin_client, response)
    assert "Sujet corrigé : « Former mes salariés ou me former »." in page
    assert fresh(db, solicitation).subject.slug == "formation"
    # The page now suggests the experts of the new subject.
    assert "Chloé OPCO" in page and "Alice CCI" not in page


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "Choisissez un sujet"), ("abc", "Choisissez un sujet"), ("999999", "Sujet inconnu"), (None, "porte déjà")],
)
def test_correct_subject_refusals_are_flashed(admin_client, db, desk_book, value, message):
    solicitation = held(db)
    value = subject("recrutement").id if value is None else value
    page = follow(admin_client, post(admin_client, solicitation, "sujet", {"subject_id": value}))
    assert "Sujet non corrigé" in page and message in page
    assert fresh(db, solicitation).subject.slug == "recrutement"


# ---------------------------------------------------------------- send


def test_send_to_a_ticked_expert_and_one_added_by_email(admin_client, db, desk_book):
    solicitation = held(db)
    sid = subject("recrutement").id
    response = post(
        admin_client,
        solicitation,
        "envoyer",
        {"subjects": sid, f"experts-{sid}": [desk_book["alice"].id], f"ajout-{sid}": "DENIS@cci.example"},
    )
    page = follow(admin_client, response)
    assert "Demande envoyée aux experts : 1 besoin(s), 2 expert(s) prévenu(s) par email." in page
    solicitation = fresh(db, solicitation)
    assert solicitation.status == "processed"
    matches = {m.expert.full_name: m for m in solicitation.need.matches}
    assert set(matches) == {"Alice CCI", "Denis Marseille"}  # Bruno was unticked
    assert (matches["Denis Marseille"].zone, matches["Denis Marseille"].zone_owner) == (None, None)
    assert matches["Alice CCI"].zone == "departement:69"
    # Made by hand, this request had no confirmation yet: sending queues it with the experts'.
    assert email_keys(db) == {f"match:{m.id}:new" for m in matches.values()} | {
        f"solicitation:{solicitation.id}:confirmation"
    }
    # The need page tells staff who was added by hand.
    need_page = body(admin_client.get(f"/admin/need/details/?id={solicitation.need.id}"))
    assert "ajouté par l&#39;équipe" in need_page


def test_send_split_into_two_needs_with_an_expert_picked_in_the_autocomplete(admin_client, db, desk_book):
    solicitation = held(db)
    recruitment, training = subject("recrutement").id, subject("formation").id
    picked = admin_client.get("/admin/solicitation/qualifier/experts/", query_string={"q": "denis"}).get_json()
    assert picked == [
        {
            "id": desk_book["denis"].id,
            "text": f"Denis Marseille <denis@cci.example> — CCI — Bouches-du-Rhône — CCI Lyon Métropole (#{desk_book['denis'].id})",
        }
    ]
    response = post(
        admin_client,
        solicitation,
        "envoyer",
        {
            "subjects": [recruitment, training],
            f"experts-{recruitment}": [desk_book["alice"].id, desk_book["bruno"].id],
            f"experts-{training}": [desk_book["chloe"].id],
            f"ajout-{training}": picked[0]["text"],
        },
    )
    assert "2 besoin(s), 4 expert(s)" in follow(admin_client, response)
    needs = fresh(db, solicitation).needs
    assert [(n.subject.slug, sorted(m.expert.full_name for m in n.matches)) for n in needs] == [
        ("recrutement", ["Alice CCI", "Bruno FT"]),
        ("formation", ["Chloé OPCO", "Denis Marseille"]),
    ]


def test_a_refused_send_changes_nothing_and_loses_nothing(admin_client, db, desk_book):
    solicitation = held(db)
    sid = subject("recrutement").id
    response = post(
        admin_client, solicitation, "envoyer", {"subjects": sid, f"ajout-{sid}": "inconnu@nulle-part.example"}
    )
    location = response.headers["Location"]
    assert location.endswith("#aiguillage")
    page = follow(admin_client, response)
    assert "Demande non envoyée : « inconnu@nulle-part.example » : aucun expert actif" in page
    # The page comes back as it was filled: nothing ticked, the typed address kept.
    assert 'value="inconnu@nulle-part.example"' in page
    assert not re.search(rf'id="expert-{sid}-{desk_book["alice"].id}"[^>]* checked', page)
    assert fresh(db, solicitation).status == "in_progress"
    assert count(db, Need) == count(db, Match) == 0 and email_keys(db) == set()

    page = follow(admin_client, post(admin_client, solicitation, "envoyer", {"subjects": sid}))
    assert "Aucun expert coché pour le sujet « Recruter un ou plusieurs salariés »" in page
    page = follow(admin_client, post(admin_client, solicitation, "envoyer", {}))
    assert "Choisissez au moins un sujet" in page
    page = follow(admin_client, post(admin_client, solicitation, "envoyer", {"subjects": "x", "experts-x": "y"}))
    assert "Choisissez un sujet dans la liste" in page
    # Numbers too large for the database are explained, never a 500.
    huge = "99999999999999999999"
    page = follow(admin_client, post(admin_client, solicitation, "envoyer", {"subjects": huge}))
    assert "Choisissez un sujet dans la liste" in page
    page = follow(admin_client, post(admin_client, solicitation, "envoyer", {"subjects": sid, f"experts-{sid}": huge}))
    assert "un expert choisi n&#39;est pas reconnu" in page
    page = follow(
        admin_client, post(admin_client, solicitation, "envoyer", {"subjects": sid, f"ajout-{sid}": f"X (#{huge})"})
    )
    assert "aucun expert actif" in page
    assert "Alice CCI" in page_of(admin_client, solicitation, sujets=huge)
    page = follow(admin_client, post(admin_client, solicitation, "sujet", {"subject_id": huge}))
    assert "Sujet non corrigé : Choisissez un sujet dans la liste." in page
    assert count(db, Need) == 0


def test_a_second_send_is_refused(admin_client, db, desk_book):
    solicitation = held(db)
    sid = subject("recrutement").id
    token = csrf_token_from(page_of(admin_client, solicitation))
    data = {"subjects": sid, f"experts-{sid}": [desk_book["alice"].id]}
    follow(admin_client, post(admin_client, solicitation, "envoyer", data, token=token))
    page = follow(admin_client, post(admin_client, solicitation, "envoyer", data, token=token))
    assert "a déjà été transmise aux experts" in page
    assert count(db, Need) == count(db, Match) == 1


# ---------------------------------------------------------------- cancel


def test_cancel_with_a_reason_emails_the_business(admin_client, db, desk_book):
    solicitation = held(db)
    page = follow(
        admin_client, post(admin_client, solicitation, "abandonner", {"reason": "incomplete", "confirm": "1"})
    )
    assert f"Demande abandonnée (« Demande incomplète ») : un email l&#39;explique à {solicitation.email}." in page
    solicitation = fresh(db, solicitation)
    assert solicitation.status == "canceled"
    assert solicitation.qualification_notes[-1] == "Abandonnée : Demande incomplète"
    email = db.session.scalar(
        select(OutboundEmail).where(OutboundEmail.key == f"solicitation:{solicitation.id}:canceled")
    )
    assert email.recipient == solicitation.email and "quelques précisions" in email.subject


def test_cancel_as_spam_emails_nothing_and_blocks_the_address(admin_client, db, desk_book, app, monkeypatch):
    from app.services.requests.solicitations import qualification_issues

    solicitation = held(db)
    page = follow(admin_client, post(admin_client, solicitation, "abandonner", {"reason": "spam", "confirm": "1"}))
    assert "Demande abandonnée comme spam" in page
    assert email_keys(db) == set()
    later = held(db, email=solicitation.email.upper())
    assert any("abandonnée comme spam" in issue for issue in qualification_issues(later))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "incomplete"}, "cochez la case qui confirme"),
        ({"reason": "", "confirm": "1"}, "choisissez un motif"),
        ({"reason": "n'importe quoi", "confirm": "1"}, "choisissez un motif"),
    ],
)
def test_cancel_needs_a_reason_and_a_confirmation(admin_client, db, desk_book, data, message):
    solicitation = held(db)
    page = follow(admin_client, post(admin_client, solicitation, "abandonner", data))
    assert "Demande non abandonnée" in page and message in page
    assert fresh(db, solicitation).status == "in_progress" and email_keys(db) == set()


def test_cancel_a_sent_request_is_refused(admin_client, db, desk_book, admin_user):
    from app.services.requests.dispatch import route_solicitation

    solicitation = held(db)
    with transaction():
        route_solicitation(solicitation)
    page = follow(
        admin_client, post(admin_client, solicitation, "abandonner", {"reason": "incomplete", "confirm": "1"})
    )
    assert "Demande non abandonnée : La demande" in page and "a déjà été transmise" in page
    assert fresh(db, solicitation).status == "processed"


@pytest.mark.parametrize(
    ("action", "note", "subject_line"),
    [
        ("abandonner-hors-champ", "Abandonnée : Hors du champ du service", "sur Place des Entreprises"),
        ("abandonner-pas-entreprise", "Abandonnée : Pas une entreprise", "sur Place des Entreprises"),
        ("abandonner-incomplete", "Abandonnée : Demande incomplète", "quelques précisions nécessaires"),
    ],
)
def test_bulk_cancel_with_a_templated_reason(admin_client, db, desk_book, action, note, subject_line):
    first, second = held(db), held(db)
    sent = held(db)
    from app.services.requests.dispatch import route_solicitation

    with transaction():
        route_solicitation(sent)
    page = body(admin_client.get("/admin/solicitation/?onglet=a-qualifier"))
    assert f'data-action="{action}"' in page or f"'{action}'" in page
    response = admin_client.post(
        "/admin/solicitation/action/",
        data={"action": action, "rowid": [first.id, second.id, sent.id], "csrf_token": csrf_token_from(page)},
        follow_redirects=True,
    )
    text = body(response)
    assert "2 demande(s) abandonnée(s)" in text and "a déjà été transmise" in text
    for solicitation in (first, second):
        assert fresh(db, solicitation).qualification_notes[-1] == note
        email = db.session.scalar(
            select(OutboundEmail).where(OutboundEmail.key == f"solicitation:{solicitation.id}:canceled")
        )
        assert email.recipient == solicitation.email and subject_line in email.subject
    assert fresh(db, sent).status == "processed"


# ---------------------------------------------------------------- notes


def test_internal_notes(admin_client, db, desk_book, admin_user):
    solicitation = held(db)
    page = follow(
        admin_client, post(admin_client, solicitation, "note", {"body": "Appeler la CCI <b>avant</b> d'envoyer"})
    )
    assert "Note interne ajoutée." in page
    assert "Appeler la CCI &lt;b&gt;avant&lt;/b&gt; d&#39;envoyer" in page
    assert "Équipe support" in page
    note = db.session.scalar(select(StaffNote))
    assert (note.solicitation_id, note.user_id) == (solicitation.id, admin_user.id)
    page = follow(admin_client, post(admin_client, solicitation, "note", {"body": "   "}))
    assert "Note non enregistrée : La note est vide." in page
    assert count(db, StaffNote) == 1


# ---------------------------------------------------------------- access and CSRF


ENDPOINTS = {
    "sujet": lambda b: {"subject_id": subject("formation").id},
    "envoyer": lambda b: {"subjects": subject("recrutement").id, f"experts-{subject('recrutement').id}": b["alice"].id},
    "abandonner": lambda b: {"reason": "incomplete", "confirm": "1"},
    "note": lambda b: {"body": "Une note"},
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_post_without_csrf_token_is_refused(admin_client, db, desk_book, endpoint):
    solicitation = held(db)
    response = admin_client.post(
        f"/admin/solicitation/qualifier/{endpoint}/", data={"id": solicitation.id, **ENDPOINTS[endpoint](desk_book)}
    )
    assert response.status_code == 400
    unchanged = fresh(db, solicitation)
    assert (unchanged.status, unchanged.subject.slug) == ("in_progress", "recrutement")
    assert count(db, StaffNote) == count(db, Need) == 0 and email_keys(db) == set()


def _token_for(client) -> str:
    """A valid CSRF token for the client's session, as Flask-WTF would sign it: a referent
    sees no back-office page to read one from."""
    raw = "a" * 40
    with client.session_transaction() as session:
        session["csrf_token"] = raw
    return URLSafeTimedSerializer(current_app.secret_key, salt="wtf-csrf-token").dumps(raw)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_referents_are_refused(referent_client, db, desk_book, endpoint):
    solicitation = held(db)
    assert referent_client.get(details_url(solicitation.id)).status_code == 403
    assert referent_client.get("/admin/solicitation/qualifier/experts/?q=alice").status_code == 403
    response = referent_client.post(
        f"/admin/solicitation/qualifier/{endpoint}/",
        data={"csrf_token": _token_for(referent_client), "id": solicitation.id, **ENDPOINTS[endpoint](desk_book)},
    )
    assert response.status_code == 403
    unchanged = fresh(db, solicitation)
    assert (unchanged.status, unchanged.subject.slug) == ("in_progress", "recrutement")
    assert count(db, StaffNote) == count(db, Need) == 0 and email_keys(db) == set()


def test_anonymous_visitors_are_sent_to_the_login_page(client, db, desk_book):
    solicitation = held(db)
    response = client.get("/admin/solicitation/qualifier/experts/?q=alice")
    assert response.status_code == 302 and response.headers["Location"].startswith("/connexion")
    assert client.get(details_url(solicitation.id)).status_code == 302


def test_unknown_or_malformed_ids_are_404(admin_client, db, desk_book):
    solicitation = held(db)
    token = csrf_token_from(page_of(admin_client, solicitation))
    for ident in ("999999", "abc", "", "99999999999999999999", "-1"):
        response = admin_client.post(
            "/admin/solicitation/qualifier/note/", data={"csrf_token": token, "id": ident, "body": "x"}
        )
        assert response.status_code == 404


def test_the_return_url_is_kept_and_only_when_local(admin_client, db, desk_book):
    solicitation = held(db)
    list_url = "/admin/solicitation/?onglet=a-qualifier"
    page = page_of(admin_client, solicitation, url=list_url)
    assert f'name="url" value="{list_url}"' in page
    token = csrf_token_from(page)
    response = admin_client.post(
        "/admin/solicitation/qualifier/note/",
        data={"csrf_token": token, "id": solicitation.id, "body": "x", "url": list_url},
    )
    assert parse_qs(urlsplit(response.headers["Location"]).query)["url"] == [list_url]
    response = admin_client.post(
        "/admin/solicitation/qualifier/note/",
        data={"csrf_token": token, "id": solicitation.id, "body": "x", "url": "https://ailleurs.example/"},
    )
    assert "ailleurs" not in response.headers["Location"]


# ---------------------------------------------------------------- query count


@pytest.mark.parametrize("tab", ["a-qualifier", "toutes"])
def test_the_list_costs_the_same_queries_for_5_or_40_rows(admin_client, db, desk_book, count_queries, tab):
    from app.services.requests.cancellation import cancel_solicitation

    def batch(number: int) -> None:
        for i in range(number):
            solicitation = held(db)
            if tab == "toutes" and i % 5 == 0:
                cancel_solicitation(solicitation, reason="incomplete")

    def queries() -> int:
        with count_queries() as counter:
            response = admin_client.get("/admin/solicitation/", query_string={"onglet": tab})
            assert response.status_code == 200
            body(response)
        return counter.count

    batch(5)
    few = queries()
    batch(35)
    many = queries()
    assert few == many
    assert count(db, Solicitation) == 40
