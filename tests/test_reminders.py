"""The relances desk: needs and experts in baskets by what they let wait, per desk (staff, or one
institution's referents), with « Traité », notes, « Relancer », the early « Dernière chance » and
the failure; the referents' weekly list; shared survey answers where experts and referents read them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from app.models import OutboundEmail, SatisfactionAnswer
from app.models.base import utcnow
from app.services.accounts.users import create_user
from app.services.errors import ServiceError
from app.services.messaging.links import inbox_url
from app.services.requests import reminders
from app.services.requests.followup import run_followup
from app.services.requests.satisfaction import record_answer, share_answer
from app.services.transactions import transaction
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, make_helped_need, make_need
from tests.helpers import PASSWORD, body, csrf_token_from, emails_by_key, text

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Paris


def aged(days: float, *, experts=None, statuses=(), **fields):
    """A need whose matches reached their experts ``days`` days before ``NOW``."""
    return make_need(
        len(experts or ()) or 2, experts=experts, statuses=statuses, created_at=NOW - timedelta(days=days), **fields
    )


def ids(page) -> list[int]:
    return [item.need.id if hasattr(item, "need") else item.expert.id for item in page.items]


@pytest.fixture
def cci(db):
    """Institution CCI with two antennes and an expert in each, and a referent of each level."""
    institution = InstitutionFactory(name="CCI Rhône", slug="cci-rhone")
    lyon = AntenneFactory(institution=institution, name="CCI Lyon")
    villefranche = AntenneFactory(institution=institution, name="CCI Villefranche")
    camille = ExpertFactory(antenne=lyon, full_name="Camille Martin", email="camille@cci.example")
    victor = ExpertFactory(antenne=villefranche, full_name="Victor Vidal", email="victor@cci.example")
    other = ExpertFactory(full_name="Dominique Petit", email="dominique@ft.example")
    with transaction():
        referent = create_user(
            "ref@cci.example",
            role="referent",
            institution_slug="cci-rhone",
            password=PASSWORD,
            full_name="Rémi Référent",
        )
        antenne_referent = create_user(
            "lyon@cci.example", role="referent", antenne_id=lyon.id, password=PASSWORD, full_name="Léa Lyon"
        )
    return {
        "institution": institution,
        "camille": camille,
        "victor": victor,
        "other": other,
        "referent": referent,
        "antenne_referent": antenne_referent,
    }


# ---------------------------------------------------------------- needs baskets


def test_needs_are_in_baskets_by_age_oldest_first(db, admin_user):
    young, fresh, older, risky, expired = aged(5), aged(10), aged(15), aged(30), aged(50)
    refused = aged(12, statuses=("not_for_me", "not_for_me"))
    taken = aged(12, statuses=("taking_care",))
    assert refused.status == "not_for_me" and taken.status == "taking_care"

    assert ids(reminders.need_basket(admin_user, "sans-reponse", now=NOW)) == [older.id, fresh.id]
    assert ids(reminders.need_basket(admin_user, "risque-abandon", now=NOW)) == [risky.id]
    assert ids(reminders.need_basket(admin_user, "refuses", now=NOW)) == [refused.id]
    assert reminders.need_counts(admin_user, NOW) == {"sans-reponse": 2, "risque-abandon": 1, "refuses": 1}
    assert young.id not in ids(reminders.need_basket(admin_user, "sans-reponse", now=NOW))
    assert expired.id not in ids(reminders.need_basket(admin_user, "risque-abandon", now=NOW))


def test_done_clears_a_need_until_its_next_basket_and_only_at_that_desk(db, admin_user, cci):
    need = aged(10, experts=[cci["camille"], cci["other"]])
    with transaction():
        reminders.mark_done(admin_user, basket="sans-reponse", need=need)
    assert ids(reminders.need_basket(admin_user, "sans-reponse", now=NOW)) == []
    # The referents' desk is their own: staff's « Traité » hides nothing from them.
    assert ids(reminders.need_basket(cci["referent"], "sans-reponse", now=NOW)) == [need.id]
    # Eleven days later it is at risk, and back in front of staff.
    assert ids(reminders.need_basket(admin_user, "risque-abandon", now=NOW + timedelta(days=11))) == [need.id]
    with transaction():
        reminders.mark_done(admin_user, basket="sans-reponse", need=need)  # twice: still one mark
    with pytest.raises(ServiceError, match="Panier inconnu"):
        reminders.mark_done(admin_user, basket="plus-de-5", need=need)


def test_an_item_shows_its_experts_absences_and_last_reminder(db, admin_user, cci):
    camille = cci["camille"]
    camille.absent_from, camille.absent_until = date(2026, 12, 1), date(2026, 12, 24)
    need = aged(22, experts=[camille, cci["other"]])
    run_followup(NOW - timedelta(days=1))  # day 21: the last chances
    db.session.commit()
    [item] = reminders.need_basket(admin_user, "risque-abandon", now=NOW).items
    assert {m.expert.full_name for m in item.matches} == {"Camille Martin", "Dominique Petit"}
    assert item.absences == {camille.id: "Absent jusqu'au 24/12/2026"}
    assert item.last_reminder.what == "« Dernière chance » à Dominique Petit"  # the absent expert was skipped
    assert (item.need.id, item.days) == (need.id, 22)


def test_referents_see_only_the_needs_and_experts_of_their_scope(db, cci, logged_in):
    mine = aged(10, experts=[cci["camille"], cci["other"]])
    villefranche = aged(10, experts=[cci["victor"]])
    elsewhere = aged(10, experts=[cci["other"]])
    page = reminders.need_basket(cci["referent"], "sans-reponse", now=NOW)
    assert sorted(ids(page)) == sorted([mine.id, villefranche.id])
    assert elsewhere.id not in ids(page)
    [item] = [i for i in page.items if i.need.id == mine.id]
    assert [m.expert.full_name for m in item.matches] == ["Camille Martin"]  # not the other institution's
    assert ids(reminders.need_basket(cci["antenne_referent"], "sans-reponse", now=NOW)) == [mine.id]


def test_the_desk_page_for_a_referent(db, cci, logged_in):
    mine = make_need(experts=[cci["camille"], cci["other"]], created_at=utcnow() - timedelta(days=10))
    client = logged_in(cci["referent"])
    page = text(client.get("/admin/relances/besoins?panier=sans-reponse"))
    assert "Camille Martin" in page and "Dominique Petit" not in page
    assert f'id="besoin-{mine.id}"' in page
    assert "Annoncer l'échec" not in page and "Dernière chance » maintenant" not in page  # staff's
    assert client.get("/admin/relances/besoins?panier=inconnu").status_code == 404
    # Another institution's need, posted by hand: not theirs to see (404), nothing written.
    elsewhere = make_need(experts=[cci["other"]], created_at=utcnow() - timedelta(days=10))
    token = csrf_token_from(body(client.get("/admin/relances/")))
    refused = client.post(
        "/admin/relances/traiter",
        data={"kind": "besoin", "id": elsewhere.id, "panier": "sans-reponse", "csrf_token": token},
    )
    assert refused.status_code == 404
    done = client.post(
        "/admin/relances/traiter",
        data={"kind": "besoin", "id": mine.id, "panier": "sans-reponse", "csrf_token": token},
        follow_redirects=True,
    )
    assert "Marqué comme traité" in text(done)
    assert f'id="besoin-{mine.id}"' not in body(done)


# ---------------------------------------------------------------- notes


def test_notes_belong_to_their_desk_and_a_refused_one_is_not_lost(db, admin_user, cci, logged_in):
    need = make_need(experts=[cci["camille"]], created_at=utcnow() - timedelta(days=10))
    staff = logged_in(admin_user)
    url = "/admin/relances/besoins?panier=sans-reponse"
    token = csrf_token_from(body(staff.get(url)))
    posted = staff.post(
        "/admin/relances/noter",
        data={
            "kind": "besoin",
            "id": need.id,
            "panier": "sans-reponse",
            "body": "Appelé Camille, rappeler lundi",
            "csrf_token": token,
        },
        follow_redirects=True,
    )
    assert "Note enregistrée." in text(posted)
    assert "Appelé Camille, rappeler lundi" in text(posted)

    referent = logged_in(cci["referent"])
    page = text(referent.get(url))
    assert "Appelé Camille" not in page  # staff's note, staff's desk
    too_long = "x" * 2001
    refused = referent.post(
        "/admin/relances/noter",
        data={
            "kind": "besoin",
            "id": need.id,
            "panier": "sans-reponse",
            "body": too_long,
            "csrf_token": csrf_token_from(page),
        },
        follow_redirects=True,
    )
    assert "Note non enregistrée : La note dépasse 2000 caractères." in text(refused)
    # What was typed comes back in the form (up to the field's length: the browser stops there).
    assert f">{too_long[:2000]}</textarea>" in text(refused)
    with transaction():
        reminders.add_note(cci["referent"], body="Vu avec Camille", need=need)
    assert "Vu avec Camille" in text(staff.get(url))  # staff read every desk's notes
    with pytest.raises(ServiceError, match="vide"):
        reminders.add_note(admin_user, body="  ", need=need)


# ---------------------------------------------------------------- staff's early steps


def test_staff_send_the_last_chance_early_and_day_21_does_not_repeat_it(db, admin_user, logged_in):
    need = make_need(created_at=utcnow() - timedelta(days=10))
    client = logged_in(admin_user)
    url = "/admin/relances/besoins?panier=sans-reponse"
    token = csrf_token_from(body(client.get(url)))
    sent = client.post(
        "/admin/relances/derniere-chance",
        data={"id": need.id, "panier": "sans-reponse", "csrf_token": token},
        follow_redirects=True,
    )
    assert "« Dernière chance » envoyée" in text(sent)
    keys = sorted(emails_by_key("match:"))
    assert keys == sorted(f"match:{m.id}:derniere-chance" for m in need.matches)
    day_21 = [p.key for p in run_followup(utcnow() + timedelta(days=11), dry_run=True) if p.step == "derniere-chance"]
    assert day_21 == []
    again = client.post(
        "/admin/relances/derniere-chance",
        data={"id": need.id, "panier": "sans-reponse", "csrf_token": token},
        follow_redirects=True,
    )
    assert "« Dernière chance » non envoyée : Aucun expert à relancer" in text(again)
    [item] = reminders.need_basket(admin_user, "sans-reponse").items
    assert item.last_reminder.what.startswith("« Dernière chance » à ")


def test_staff_announce_a_refused_needs_failure_from_the_desk(db, admin_user, logged_in):
    need = make_need(statuses=("not_for_me", "not_for_me"), created_at=utcnow() - timedelta(days=3))
    client = logged_in(admin_user)
    url = "/admin/relances/besoins?panier=refuses"
    assert f'id="besoin-{need.id}"' in body(client.get(url))
    done = client.post(
        "/admin/relances/echec",
        data={"id": need.id, "panier": "refuses", "csrf_token": csrf_token_from(body(client.get(url)))},
        follow_redirects=True,
    )
    assert "Échec annoncé à l'entreprise" in text(done)
    assert f'id="besoin-{need.id}"' not in body(done)
    assert f"need:{need.id}:echec" in emails_by_key("need:")


# ---------------------------------------------------------------- experts baskets


def test_experts_are_in_baskets_by_what_they_let_wait(db, admin_user):
    many = ExpertFactory(full_name="Many")
    for age in (1, 2, 3, 4, 5, 6):
        aged(age, experts=[many])
    medium = ExpertFactory(full_name="Medium")
    for age in (3, 16, 20):
        aged(age, experts=[medium])
    fresh = ExpertFactory(full_name="Fresh")  # 3 waiting, only one old: not yet a worry
    for age in (3, 4, 16):
        aged(age, experts=[fresh])
    silent = ExpertFactory(full_name="Silent")
    aged(5, experts=[silent])
    aged(130, experts=[silent], statuses=("done",))  # its previous request, four months before
    busy = ExpertFactory(full_name="Busy")  # one waiting, but another received a month before
    aged(5, experts=[busy])
    aged(35, experts=[busy], statuses=("done",))

    assert ids(reminders.expert_basket(admin_user, "plus-de-5", now=NOW)) == [many.id]
    assert ids(reminders.expert_basket(admin_user, "2-a-5", now=NOW)) == [medium.id]
    assert ids(reminders.expert_basket(admin_user, "apres-silence", now=NOW)) == [silent.id]
    [item] = reminders.expert_basket(admin_user, "2-a-5", now=NOW).items
    assert (item.waiting, item.old, item.oldest_days) == (3, 2, 20)


def test_done_clears_an_expert_for_a_week(db, admin_user, cci):
    camille = cci["camille"]
    for age in range(1, 8):
        aged(age, experts=[camille])
    with transaction():
        reminders.mark_done(admin_user, basket="plus-de-5", expert=camille)
    assert reminders.expert_counts(admin_user, utcnow())["plus-de-5"] == 0
    assert reminders.expert_counts(cci["referent"], utcnow())["plus-de-5"] == 1
    assert reminders.expert_counts(admin_user, utcnow() + timedelta(days=7, minutes=1))["plus-de-5"] == 1


def test_remind_an_expert_once_a_week(db, admin_user, cci, logged_in):
    camille = cci["camille"]
    for age in (3, 16, 20):
        make_need(experts=[camille], created_at=utcnow() - timedelta(days=age))
    client = logged_in(cci["referent"])
    url = "/admin/relances/experts?panier=2-a-5"
    page = text(client.get(url))
    assert "Camille Martin" in page and "3 demande(s) en attente" in page
    sent = client.post(
        "/admin/relances/relancer",
        data={"id": camille.id, "panier": "2-a-5", "csrf_token": csrf_token_from(page)},
        follow_redirects=True,
    )
    assert "Relance envoyée à Camille Martin." in text(sent)
    [email] = emails_by_key(f"expert:{camille.id}:relance:").values()
    assert email.recipient == "camille@cci.example"
    assert "Rémi Référent (CCI Rhône) revient vers vous : 3 demandes d'entreprises attendent" in email.body_text
    assert email.body_text.count("/expert/") == 3 and "/mes-demandes/" in email.body_text
    assert "Dernière relance : relance, le" in text(client.get(url))

    staff = logged_in(admin_user)
    again = staff.post(
        "/admin/relances/relancer",
        data={"id": camille.id, "panier": "2-a-5", "csrf_token": csrf_token_from(body(staff.get(url)))},
        follow_redirects=True,
    )
    assert "Relance non envoyée : Cet expert a déjà été relancé cette semaine" in text(again)
    # Another institution's expert is not the referent's to remind.
    assert (
        client.post(
            "/admin/relances/relancer", data={"id": cci["other"].id, "csrf_token": csrf_token_from(page)}
        ).status_code
        == 404
    )


def test_no_reminder_to_an_absent_expert_or_one_with_nothing_waiting(db, admin_user, cci):
    victor = cci["victor"]
    with pytest.raises(ServiceError, match="aucune demande en attente"):
        reminders.remind_expert(admin_user, victor)
    make_need(experts=[victor], created_at=utcnow() - timedelta(days=5))
    victor.absent_from, victor.absent_until = utcnow().date() - timedelta(days=1), utcnow().date() + timedelta(days=3)
    with pytest.raises(ServiceError, match="la relance attendra son retour"):
        reminders.remind_expert(admin_user, victor)
    assert emails_by_key("expert:") == {}


# ---------------------------------------------------------------- the referents' weekly list


def test_referents_get_their_late_experts_once_a_week(db, cci):
    camille, victor = cci["camille"], cci["victor"]
    for age in (10, 12):
        aged(age, experts=[camille])
    aged(5, experts=[victor])  # not late yet
    aged(11, experts=[cci["other"]])  # another institution's

    monday = NOW - timedelta(days=1)
    assert [p for p in run_followup(monday, dry_run=True) if p.step == "experts-en-attente"] == []
    with transaction():
        sent = [p.key for p in run_followup(NOW) if p.step == "experts-en-attente"]
    referent, antenne_referent = cci["referent"], cci["antenne_referent"]
    assert sorted(sent) == sorted(
        [f"user:{referent.id}:experts-en-attente:2026-W50", f"user:{antenne_referent.id}:experts-en-attente:2026-W50"]
    )
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == sent[0]))
    assert email.subject == "Un de vos experts a des demandes en attente depuis plus de 9 jours"
    assert "Camille Martin (CCI Lyon) : 2 demande(s), la plus ancienne depuis 12 jours" in email.body_text
    assert "Victor" not in email.body_text and "Dominique" not in email.body_text
    assert "/admin/relances/experts" in email.body_text
    with transaction():
        assert [p for p in run_followup(NOW + timedelta(days=1)) if p.step == "experts-en-attente"] == []


# ---------------------------------------------------------------- shared answers


def test_shared_answers_reach_the_experts_inbox_and_the_referents_desk(db, app, admin_user, cci, client, logged_in):
    need = make_helped_need(experts=[cci["camille"], cci["other"]])
    helper = next(m for m in need.matches if m.status == "done").expert
    assert helper.id == cci["camille"].id
    with transaction():
        record_answer(need, contacted=True, useful=True, comment="Très bon accueil")
    with app.test_request_context():
        camille_inbox = inbox_url(cci["camille"]).split("/", 3)[3]
        other_inbox = inbox_url(cci["other"]).split("/", 3)[3]
    assert "Très bon accueil" not in text(client.get("/" + camille_inbox))  # not shared yet
    referent = logged_in(cci["referent"])
    assert "Très bon accueil" not in text(referent.get("/admin/relances/avis"))
    assert "Très bon accueil" in text(logged_in(admin_user).get("/admin/relances/avis"))  # staff see every answer

    with transaction():
        share_answer(need, user=admin_user)
    inbox = text(client.get("/" + camille_inbox))
    assert "Avis des entreprises que vous avez aidées" in inbox
    assert "rappelé(e) : oui ; utile : oui ; commentaire : Très bon accueil" in inbox
    assert "Très bon accueil" not in text(client.get("/" + other_inbox))  # refused the need: not theirs
    assert "Très bon accueil" in text(referent.get("/admin/relances/avis"))
    assert db.session.scalar(select(SatisfactionAnswer.shared_at)) is not None


def test_the_desk_forms_need_their_csrf_token(db, admin_user, logged_in):
    need = make_need(created_at=utcnow() - timedelta(days=10))
    client = logged_in(admin_user)
    for url, data in (
        ("/admin/relances/traiter", {"kind": "besoin", "id": need.id, "panier": "sans-reponse"}),
        ("/admin/relances/noter", {"kind": "besoin", "id": need.id, "body": "Rappeler"}),
        ("/admin/relances/derniere-chance", {"id": need.id}),
    ):
        assert client.post(url, data=data).status_code == 400
    assert reminders.need_counts(admin_user)["sans-reponse"] == 1
    assert emails_by_key("match:") == {}
