"""Staff acting on a need: adding an expert, reassigning a match, following the need, resending
one of its emails — through the service verbs, then through the need page's endpoints."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, Match, Need, NeedStar, OutboundEmail, StaffNote
from app.models.audit import REASSIGNED_EXPERT, REASSIGNED_MATCH
from app.services.addressbook.addressbook import delete_expert
from app.services.errors import ServiceError
from app.services.messaging.links import LinkError, expert_token, match_for_token
from app.services.requests.matches import change_match_status
from app.services.requests.needs import (
    add_expert_to_need,
    reassign_match,
    resend_need_email,
    star_need,
    unstar_need,
)
from app.services.transactions import transaction
from tests.factories import ExpertFactory, make_need, make_routed, make_solicitation
from tests.helpers import body, csrf_token_from


def emails(db, prefix: str = "") -> dict[str, OutboundEmail]:
    rows = db.session.scalars(select(OutboundEmail).where(OutboundEmail.key.startswith(prefix)))
    return {row.key: row for row in rows}


def matches_of(db, need: Need) -> list[Match]:
    db.session.expire_all()
    return list(db.session.scalars(select(Match).where(Match.need_id == need.id).order_by(Match.id)))


def need_status(db, need: Need) -> str:
    db.session.expire_all()
    return db.session.get(Need, need.id).status


def referent(db):
    from app.services.accounts.users import create_user
    from tests.factories import InstitutionFactory

    InstitutionFactory(slug="cma")
    return create_user("ref@cma.example", role="referent", institution_slug="cma", password="motdepasse-tres-long")


# ---------------------------------------------------------------- add an expert


def test_staff_add_an_expert_who_is_emailed_and_counted(db, admin_user):
    need = make_need(2, statuses=("not_for_me", "not_for_me"))
    assert need.status == "not_for_me"
    expert = ExpertFactory(full_name="Sacha Leroy")

    with transaction():
        match = add_expert_to_need(need, expert, user=admin_user)

    assert (match.status, match.zone, match.zone_owner) == ("quo", None, None)
    assert need_status(db, need) == "quo"  # someone new may take it: no longer refused by all
    email = emails(db)[f"match:{match.id}:new"]
    assert email.recipient == expert.email
    assert "/expert/" in email.body_text
    assert "2 autres experts ont aussi reçu cette demande" in email.body_text
    created = db.session.scalar(
        select(AuditEvent).where(
            AuditEvent.object_type == "Match", AuditEvent.object_id == match.id, AuditEvent.action == "create"
        )
    )
    assert (created.user_id, created.actor) == (admin_user.id, admin_user.email)


@pytest.mark.parametrize("case", ["already", "deleted", "canceled", "not_staff"])
def test_adding_an_expert_is_refused_in_french_and_writes_nothing(db, admin_user, case):
    need = make_need(1)
    expert = ExpertFactory()
    user = admin_user
    if case == "already":
        expert = need.matches[0].expert
        expected = "a déjà reçu ce besoin"
    elif case == "deleted":
        delete_expert(expert)
        expected = "supprimé de l'annuaire"
    elif case == "canceled":
        solicitation = make_solicitation(status="canceled")
        need.solicitation_id = solicitation.id
        db.session.commit()
        expected = "abandonnée"
    else:
        user = referent(db)
        expected = "Seule l'équipe"
    before_matches = len(matches_of(db, need))
    before_emails = len(emails(db))

    with pytest.raises(ServiceError, match=expected):
        add_expert_to_need(need, expert, user=user)

    assert len(matches_of(db, need)) == before_matches
    assert len(emails(db)) == before_emails


# ---------------------------------------------------------------- reassign a match


def test_reassigning_hands_the_need_over_and_tells_both_experts(db, admin_user):
    need = make_need(2, statuses=("taking_care", "not_for_me"))
    old = need.matches[0]
    old_id, old_expert = old.id, old.expert
    old_token = expert_token(old)
    refuser_id = need.matches[1].expert_id
    assert need.status == "taking_care"
    newcomer = ExpertFactory(full_name="Noa Girard")

    new = reassign_match(old, newcomer, user=admin_user)

    remaining = matches_of(db, need)
    assert [(m.expert_id, m.status) for m in remaining] == [
        (refuser_id, "not_for_me"),
        (newcomer.id, "quo"),
    ]
    assert db.session.get(Match, old_id) is None
    # Not a refusal: the need waits for the newcomer, it is not « refusé par tous ».
    assert need_status(db, need) == "quo"

    sent = emails(db)
    farewell = sent[f"match:{old_id}:reassigned"]
    assert farewell.recipient == old_expert.email
    assert "Noa Girard" in farewell.body_text
    assert "Vous l'aviez prise en charge" in farewell.body_text
    assert "/expert/" not in farewell.body_text and "/expert/" not in (farewell.body_html or "")
    welcome = sent[f"match:{new.id}:new"]
    assert welcome.recipient == newcomer.email and "/expert/" in welcome.body_text
    assert "1 autre expert a aussi reçu cette demande" in welcome.body_text

    # The old link no longer opens the need; the newcomer's does.
    with pytest.raises(LinkError):
        match_for_token(old_token)
    assert match_for_token(expert_token(new)).id == new.id

    # The audit trail says who did it, and how to find the old match again.
    events = list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.user_id == admin_user.id).order_by(AuditEvent.id))
    )
    kinds = {(e.object_type, e.object_id, e.action) for e in events}
    assert ("Match", old_id, "delete") in kinds
    assert ("Match", new.id, "create") in kinds
    reassigned = next(e for e in events if REASSIGNED_MATCH in (e.changes or {}))
    assert (reassigned.object_type, reassigned.object_id) == ("Need", need.id)
    assert reassigned.changes[REASSIGNED_MATCH] == [old_id, new.id]
    assert reassigned.changes[REASSIGNED_EXPERT] == [old_expert.id, newcomer.id]


def test_a_waiting_match_of_a_taken_need_keeps_the_need_taken(db, admin_user):
    need = make_need(2, statuses=("quo", "done"))
    reassign_match(need.matches[0], ExpertFactory(), user=admin_user)
    assert need_status(db, need) == "done"


def test_a_deleted_expert_is_not_emailed_when_their_match_is_handed_over(db, admin_user):
    need = make_need(1)
    old = need.matches[0]
    old_id = old.id
    delete_expert(old.expert)
    reassign_match(old, ExpertFactory(), user=admin_user)
    assert f"match:{old_id}:reassigned" not in emails(db)


@pytest.mark.parametrize("case", ["closed", "refused", "already", "same", "deleted", "not_staff"])
def test_reassigning_is_refused_in_french_and_changes_nothing(db, admin_user, case):
    need = make_need(2, statuses=("done" if case == "closed" else "not_for_me" if case == "refused" else "quo",))
    match = need.matches[0]
    target = ExpertFactory()
    user = admin_user
    expected = {
        "closed": "en attente ou prise en charge",
        "refused": "en attente ou prise en charge",
        "already": "a déjà reçu ce besoin",
        "same": "a déjà cette mise en relation",
        "deleted": "supprimé de l'annuaire",
        "not_staff": "Seule l'équipe",
    }[case]
    if case == "already":
        target = need.matches[1].expert
    elif case == "same":
        target = match.expert
    elif case == "deleted":
        delete_expert(target)
    elif case == "not_staff":
        user = referent(db)
    before = [(m.id, m.expert_id, m.status) for m in matches_of(db, need)]
    before_emails = len(emails(db))

    with pytest.raises(ServiceError, match=expected):
        reassign_match(match, target, user=user)

    assert [(m.id, m.expert_id, m.status) for m in matches_of(db, need)] == before
    assert len(emails(db)) == before_emails


# ---------------------------------------------------------------- stars and resending


def test_star_and_unstar_are_idempotent(db, admin_user):
    need = make_need(1)

    def stars() -> int:
        return db.session.scalar(select(func.count(NeedStar.id)).where(NeedStar.need_id == need.id))

    star_need(need, admin_user)
    star_need(need, admin_user)
    assert stars() == 1
    unstar_need(need, admin_user)
    unstar_need(need, admin_user)
    assert stars() == 0


def test_resend_copies_a_sent_email_of_the_need_only(db, admin_user):
    need = make_need(1)
    with transaction():
        match = add_expert_to_need(need, ExpertFactory(), user=admin_user)
    original = emails(db)[f"match:{match.id}:new"]
    assert original.state == "sent"  # no MAIL_SERVER in tests: logged, marked sent

    with transaction():
        copy = resend_need_email(need, original.id, user=admin_user)
    assert copy.key == f"match:{match.id}:new:renvoi:1"
    assert copy.body_text == original.body_text

    other = make_need(1)
    with transaction():
        stranger = add_expert_to_need(other, ExpertFactory(), user=admin_user)
    stranger_email = emails(db)[f"match:{stranger.id}:new"]
    with pytest.raises(ServiceError, match="ne concerne pas ce besoin"):
        resend_need_email(need, stranger_email.id, user=admin_user)


# ---------------------------------------------------------------- the need page


def page_of(client, need_id: int):
    return client.get(f"/admin/need/details/?id={need_id}")


def post(client, need_id: int, endpoint: str, data: dict, *, token: bool = True):
    form = {"id": str(need_id), **data}
    if token:
        form["csrf_token"] = csrf_token_from(body(page_of(client, need_id)))
    return client.post(f"/admin/need/{endpoint}/", data=form)


def flashed(client, response) -> str:
    assert response.status_code == 303, body(response)
    return body(client.get(response.headers["Location"]))


def test_the_page_offers_the_actions(admin_client, db):
    need = make_need(2, statuses=("quo", "done"))
    absent = need.matches[0].expert
    from datetime import date, timedelta

    absent.absent_until = date.today() + timedelta(days=10)
    db.session.commit()
    page = body(page_of(admin_client, need.id))
    assert "Absent jusqu&#39;au" in page
    assert page.count('name="match_id"') == 1  # only the waiting match can be handed over
    for text in ("Suivre ce besoin", "Ajouter un expert", "Notes internes", "Historique du besoin", "Discussion"):
        assert text in page, text


def test_add_an_expert_by_email_from_the_page(admin_client, db):
    need = make_need(1)
    expert = ExpertFactory(full_name="Sacha Leroy")
    response = post(admin_client, need.id, "ajouter-expert", {"expert": f"  {expert.email.upper()} "})
    assert "Sacha Leroy a reçu le besoin" in flashed(admin_client, response)
    assert expert.id in {m.expert_id for m in matches_of(db, need)}


def test_add_an_expert_picked_from_the_suggestions(admin_client, db):
    need = make_need(1)
    expert = ExpertFactory(full_name="Sacha Leroy")
    deleted = ExpertFactory(full_name="Sacha Ancien")
    delete_expert(deleted)
    suggestions = admin_client.get("/admin/need/experts/", query_string={"q": "sacha"}).get_json()
    assert [s["value"] for s in suggestions] == [f"Sacha Leroy <{expert.email}> #{expert.id}"]
    response = post(admin_client, need.id, "ajouter-expert", {"expert": suggestions[0]["value"]})
    assert "Sacha Leroy a reçu le besoin" in flashed(admin_client, response)
    assert expert.id in {m.expert_id for m in matches_of(db, need)}


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Indiquez l&#39;expert"),
        ("personne@nulle-part.example", "Aucun expert actif"),
        ("pas une adresse", "n&#39;est pas une adresse électronique"),
        ("Quelqu'un #999999999", "n&#39;existe pas ou n&#39;est plus actif"),
        ("Quelqu'un #99999999999999999999", "n&#39;est pas une adresse électronique"),
        ("x" * 600, "trop long"),
    ],
)
def test_a_bad_expert_is_explained_and_kept_in_the_field(admin_client, db, typed, message):
    need = make_need(1)
    response = post(admin_client, need.id, "ajouter-expert", {"expert": typed})
    page = flashed(admin_client, response)
    assert message in page
    if typed.strip():
        assert parse_qs(urlsplit(response.headers["Location"]).query)["expert"] == [typed[:500]]
    assert len(matches_of(db, need)) == 1


def test_an_email_of_two_antennes_asks_which_one(admin_client, db):
    need = make_need(1)
    first = ExpertFactory(email="partage@cci.example")
    second = ExpertFactory(email="partage@cci.example")
    page = flashed(admin_client, post(admin_client, need.id, "ajouter-expert", {"expert": "partage@cci.example"}))
    assert f"#{first.id}" in page and f"#{second.id}" in page
    assert len(matches_of(db, need)) == 1


def test_reassign_from_the_page(admin_client, db, admin_user):
    need = make_need(2, statuses=("taking_care",))
    old = need.matches[0]
    old_name, old_id = old.expert.full_name, old.id
    newcomer = ExpertFactory(full_name="Noa Girard")
    response = post(admin_client, need.id, "reattribuer", {"match_id": str(old_id), "expert": newcomer.email})
    assert f"Besoin réattribué de {old_name} à Noa Girard" in flashed(admin_client, response)
    assert newcomer.id in {m.expert_id for m in matches_of(db, need)}
    assert f"match:{old_id}:reassigned" in emails(db)
    # The page's timeline tells it, attributed to the staff member.
    page = body(page_of(admin_client, need.id))
    assert "Mise en relation réattribuée de" in page and admin_user.full_name in page


@pytest.mark.parametrize("match_id", ["", "abc", "999999999", "-1", "1e9", "99999999999999999999", "١٢"])
def test_reassign_with_a_garbage_match_is_a_message(admin_client, db, match_id):
    need = make_need(1)
    target = ExpertFactory()
    response = post(admin_client, need.id, "reattribuer", {"match_id": match_id, "expert": target.email})
    assert "Mise en relation introuvable" in flashed(admin_client, response)
    assert [m.expert_id for m in matches_of(db, need)] == [need.matches[0].expert_id]


def test_a_match_of_another_need_cannot_be_reassigned_from_this_page(admin_client, db):
    need, other = make_need(1), make_need(1)
    foreign = other.matches[0]
    response = post(
        admin_client, need.id, "reattribuer", {"match_id": str(foreign.id), "expert": ExpertFactory().email}
    )
    assert "Mise en relation introuvable" in flashed(admin_client, response)
    assert db.session.get(Match, foreign.id) is not None


def test_star_from_the_page_and_the_list(admin_client, db):
    need = make_need(1)
    page = flashed(admin_client, post(admin_client, need.id, "suivre", {"follow": "1"}))
    assert "Vous suivez ce besoin." in page and "Ne plus suivre ce besoin" in page
    listing = body(admin_client.get("/admin/need/"))
    assert "Vous suivez ce besoin" in listing and "★" in listing
    page = flashed(admin_client, post(admin_client, need.id, "suivre", {"follow": "0"}))
    assert "Vous ne suivez plus ce besoin." in page
    assert "★" not in body(admin_client.get("/admin/need/"))


def test_resend_from_the_page(admin_client, db, admin_user):
    need = make_need(1)
    with transaction():
        match = add_expert_to_need(need, ExpertFactory(), user=admin_user)
    original = emails(db)[f"match:{match.id}:new"]
    page = body(page_of(admin_client, need.id))
    assert f'name="email_id" value="{original.id}"' in page
    response = post(admin_client, need.id, "renvoyer", {"email_id": str(original.id)})
    assert "Courriel remis en file d&#39;envoi." in flashed(admin_client, response)
    assert f"match:{match.id}:new:renvoi:1" in emails(db)


@pytest.mark.parametrize("email_id", ["", "abc", "999999999", "99999999999999999999"])
def test_resend_with_a_garbage_email_is_a_message(admin_client, db, email_id):
    need = make_need(1)
    before = len(emails(db))
    page = flashed(admin_client, post(admin_client, need.id, "renvoyer", {"email_id": email_id}))
    assert "Courriel non renvoyé" in page
    assert len(emails(db)) == before


def test_internal_notes_from_the_page(admin_client, db):
    need = make_need(1)
    page = flashed(admin_client, post(admin_client, need.id, "noter", {"body": "Rappeler <b>lundi</b>"}))
    assert "Note interne enregistrée." in page
    assert "Rappeler &lt;b&gt;lundi&lt;/b&gt;" in page
    page = flashed(admin_client, post(admin_client, need.id, "noter", {"body": "   "}))
    assert "La note est vide." in page
    assert db.session.scalar(select(func.count(StaffNote.id))) == 1


ACTIONS = [
    ("ajouter-expert", {"expert": "x@y.example"}),
    ("reattribuer", {"match_id": "1", "expert": "x@y.example"}),
    ("suivre", {"follow": "1"}),
    ("renvoyer", {"email_id": "1"}),
    ("noter", {"body": "Note"}),
]


@pytest.mark.parametrize(("endpoint", "data"), ACTIONS)
def test_a_post_without_csrf_token_is_refused(admin_client, db, endpoint, data):
    need = make_need(1)
    response = post(admin_client, need.id, endpoint, data, token=False)
    assert response.status_code == 400
    assert db.session.scalar(select(func.count(NeedStar.id))) == 0
    assert db.session.scalar(select(func.count(StaffNote.id))) == 0


@pytest.mark.parametrize(("endpoint", "data"), ACTIONS)
def test_referents_are_refused(referent_client, db, endpoint, data):
    need = make_need(1)
    assert referent_client.post(f"/admin/need/{endpoint}/", data={"id": str(need.id), **data}).status_code in (400, 403)


def test_a_referent_reads_the_need_without_the_staff_tools(referent_client, db):
    from app.models import Institution
    from app.services.accounts.users import create_user
    from app.services.requests.notes import add_note
    from tests.factories import AntenneFactory

    need = make_need(1)
    bpi = db.session.scalar(select(Institution).where(Institution.slug == "bpi"))
    ours = ExpertFactory(antenne=AntenneFactory(institution=bpi), full_name="Expert de la BPI")
    db.session.add(Match(need_id=need.id, expert_id=ours.id, status="quo"))
    db.session.commit()
    staff = create_user("equipe@place.example", role="admin", password="motdepasse-tres-long")
    add_note(need, user=staff, body="Note réservée à l'équipe")
    response = referent_client.get(f"/admin/need/details/?id={need.id}")
    assert response.status_code == 200
    page = body(response)
    assert "Expert de la BPI" in page
    for hidden in ("Note réservée", "Notes internes", 'name="match_id"', "Historique du besoin", "Suivre ce besoin"):
        assert hidden not in page, hidden


@pytest.mark.parametrize(("endpoint", "data"), ACTIONS)
@pytest.mark.parametrize("need_id", ["999999999", "abc", "", "99999999999999999999"])
def test_an_unknown_need_is_404(admin_client, db, endpoint, data, need_id):
    token = csrf_token_from(body(admin_client.get("/admin/need/")))
    response = admin_client.post(f"/admin/need/{endpoint}/", data={"id": need_id, "csrf_token": token, **data})
    assert response.status_code == 404


# ---------------------------------------------------------------- lists


def test_the_match_list_links_each_row_to_its_need(admin_client, db, book):
    need = make_routed(1)[0]
    page = body(admin_client.get("/admin/match/"))
    assert f'href="/admin/need/details/?id={need.id}"' in page
    header = body(admin_client.get("/admin/match/export/csv/")).splitlines()[0]
    assert "Besoin" not in header


def _list_queries(client, count_queries) -> int:
    with count_queries() as counter:
        response = client.get("/admin/need/")
        assert response.status_code == 200
    return counter.count


def test_the_need_list_costs_the_same_with_5_or_40_rows(admin_client, db, admin_user, count_queries):
    for _ in range(5):
        star_need(make_need(2, statuses=("taking_care",)), admin_user)
    few = _list_queries(admin_client, count_queries)
    for _ in range(35):
        star_need(make_need(2, statuses=("done",)), admin_user)
    many = _list_queries(admin_client, count_queries)
    assert db.session.scalar(select(func.count(Need.id))) == 40
    assert few == many


def test_a_change_by_an_expert_then_a_reassignment_keeps_the_story(db, admin_user):
    """The expert takes the need, staff hand it over: the old match's events stay readable."""
    from app.services.audit import acting_as
    from app.services.requests.timeline import need_timeline

    need = make_need(1)
    old = need.matches[0]
    with acting_as(f"expert {old.expert.email} (lien)"):
        change_match_status(old, "taking_care")
    old_name = old.expert.full_name
    reassign_match(old, ExpertFactory(full_name="Noa Girard"), user=admin_user)
    texts = [entry.text for entry in need_timeline(db.session.get(Need, need.id))]
    assert any(text.startswith(f"{old_name} ") and "En attente → Prise en charge" in text for text in texts)
    assert any("Mise en relation réattribuée de " + old_name in text for text in texts)
