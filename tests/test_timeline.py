"""A need's timeline: its audit trail, its emails and their delivery, the thread, the internal
notes and the stars in one chronological list, at a fixed number of queries."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Need, OutboundEmail
from app.services.accounts.users import create_user
from app.services.audit import acting_as
from app.services.messaging.discussion import post_comment
from app.services.requests.matches import change_match_status
from app.services.requests.needs import add_expert_to_need, reassign_match, star_need
from app.services.requests.notes import add_note
from app.services.requests.timeline import need_timeline
from app.services.transactions import transaction
from tests.factories import ExpertFactory, make_need, make_routed


def failed_email(db, key: str) -> OutboundEmail:
    """The email of ``key`` as the SMTP server refused it for good (what the worker leaves
    behind), written when the cause did not write it."""
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key)) or OutboundEmail(
        key=key, recipient="alix@boulangerie.example", subject="Votre demande a bien été reçue", body_text="Bonjour"
    )
    email.state, email.attempts, email.last_error = "failed", 3, "Refus du serveur SMTP (550 boîte inconnue)"
    db.session.add(email)
    db.session.commit()
    return email


def fresh(db, need: Need) -> Need:
    db.session.expire_all()
    return db.session.get(Need, need.id)


def test_every_source_in_order_with_its_actor(db, book, admin_user):
    need = make_routed(1)[0]
    camille = next(m for m in need.matches if m.expert.full_name == "Camille Martin")
    dominique = next(m for m in need.matches if m.expert.full_name == "Dominique Petit")
    failed_email(db, f"solicitation:{need.solicitation_id}:confirmation")
    with acting_as(f"expert {camille.expert.email} (lien)"), transaction():
        change_match_status(camille, "taking_care")
    with transaction():
        post_comment(need, body="J'ai aussi une piste.", expert=dominique.expert)
    with transaction():
        add_note(need, user=admin_user, body="Entreprise déjà connue de la CCI.")
    with transaction():
        star_need(need, admin_user)
    with transaction():
        added = add_expert_to_need(need, ExpertFactory(full_name="Sacha Leroy"), user=admin_user)
    other = make_need(1)  # its emails and events are not this need's
    with transaction():
        add_expert_to_need(other, ExpertFactory(full_name="Hors sujet"), user=admin_user)

    entries = need_timeline(fresh(db, need))

    assert [entry.at for entry in entries] == sorted(entry.at for entry in entries)
    assert not any("Hors sujet" in entry.text for entry in entries)
    texts = [entry.text for entry in entries]
    assert texts[0].startswith("Besoin créé")

    def first(predicate) -> int:
        return next(index for index, entry in enumerate(entries) if predicate(entry))

    routed = first(lambda e: e.kind == "match" and e.text.startswith("Besoin envoyé à Camille Martin"))
    assert "departement:69, zone de l'antenne" in entries[routed].text
    assert entries[routed].actor == "Système"

    confirmation = first(lambda e: e.email is not None and e.email.key.startswith("solicitation:"))
    assert entries[confirmation].text.startswith("Confirmation de la demande envoyée à l'entreprise")
    delivery = entries[confirmation].email
    assert (delivery.state, delivery.state_label, delivery.attempts) == ("failed", "Échec définitif", 3)
    assert delivery.last_error == "Refus du serveur SMTP (550 boîte inconnue)"

    taken = first(lambda e: e.kind == "match" and "En attente → Prise en charge" in e.text)
    assert entries[taken].text == "Camille Martin (CCI Lyon Métropole) : En attente → Prise en charge"
    assert entries[taken].actor == "Camille Martin (expert, par son lien)"
    assert entries[taken].match_id == camille.id
    need_taken = first(lambda e: e.text == "Statut du besoin : En attente → Prise en charge")
    assert entries[need_taken].actor == "Camille Martin (expert, par son lien)"
    announced = first(lambda e: e.email is not None and e.email.key == f"need:{need.id}:taken_care")
    assert entries[announced].text.startswith("« Prise en charge » annoncée à l'entreprise")
    assert entries[announced].email.state_label == "Journalisé, non envoyé"  # no MAIL_SERVER in tests

    comment = first(lambda e: e.kind == "comment")
    assert entries[comment].detail == "J'ai aussi une piste."
    assert entries[comment].actor.startswith("Dominique Petit — ")
    digest = first(lambda e: e.email is not None and e.email.key.startswith(f"comments:{need.id}:"))
    assert entries[digest].text.startswith("Nouveaux messages de la discussion notifiés")

    note = first(lambda e: e.kind == "note")
    assert (entries[note].actor, entries[note].detail) == (
        "Équipe : Équipe support",
        "Entreprise déjà connue de la CCI.",
    )
    star = first(lambda e: e.kind == "star")
    assert (entries[star].actor, entries[star].text) == ("Équipe : Équipe support", "Suit ce besoin")
    staff_added = first(lambda e: e.kind == "match" and "Sacha Leroy" in e.text)
    assert (
        entries[staff_added].text
        == f"Sacha Leroy ({added.expert.antenne.institution.name}) ajouté(e) au besoin par l'équipe"
    )
    assert entries[staff_added].actor == "Équipe : Équipe support"
    welcome = first(lambda e: e.email is not None and e.email.key == f"match:{added.id}:new")
    assert entries[welcome].email.recipient == added.expert.email

    assert routed < taken <= need_taken < announced < comment < digest < note < star < staff_added < welcome
    assert confirmation < taken


def test_a_reassignment_keeps_the_removed_match_and_its_emails(db, admin_user):
    need = make_need(1)
    old = need.matches[0]
    old_id, old_name = old.id, old.expert.full_name
    with transaction():
        new = reassign_match(old, ExpertFactory(full_name="Noa Girard"), user=admin_user)

    entries = need_timeline(fresh(db, need))

    keys = [entry.email.key for entry in entries if entry.email is not None]
    assert f"match:{old_id}:reassigned" in keys and f"match:{new.id}:new" in keys
    reassigned = next(e for e in entries if e.text.startswith("Mise en relation réattribuée"))
    assert old_name in reassigned.text and "à Noa Girard" in reassigned.text
    assert "(elle était « En attente »)" in reassigned.text
    assert reassigned.actor == "Équipe : Équipe support"
    handed = next(e for e in entries if e.text.startswith("Besoin confié à Noa Girard"))
    assert handed.match_id == new.id
    # The removed match's creation is still told, without a link to a page that no longer exists.
    created = next(e for e in entries if e.kind == "match" and e.text.startswith(f"Besoin envoyé à {old_name}"))
    assert created.match_id is None
    farewell = next(e for e in entries if e.email is not None and e.email.key == f"match:{old_id}:reassigned")
    assert farewell.text.startswith("Réattribution annoncée à l'ancien expert")


def test_a_resent_copy_says_so(db, admin_user):
    from app.services.requests.needs import resend_need_email

    need = make_need(1)
    with transaction():
        match = add_expert_to_need(need, ExpertFactory(), user=admin_user)
    original = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{match.id}:new"))
    with transaction():
        resend_need_email(need, original.id, user=admin_user)
    texts = [e.text for e in need_timeline(fresh(db, need)) if e.email is not None]
    assert any(text.startswith("Nouvelle demande envoyée à l'expert (renvoi n° 1)") for text in texts)


def _lively_need(db, admin_user, rounds: int) -> Need:
    """A need that lived ``rounds`` times the same story: an expert added by staff takes it and
    gives it back through their link, a comment, a note, a new follower, a refused email, and a
    reassignment."""
    need = make_need(2)
    for index in range(rounds):
        with transaction():
            added = add_expert_to_need(need, ExpertFactory(), user=admin_user)
        with acting_as(f"expert {added.expert.email} (lien)"):
            with transaction():
                change_match_status(added, "taking_care")
            with transaction():
                change_match_status(added, "quo")
        with transaction():
            post_comment(need, body=f"Point n° {index}", expert=added.expert)
        with transaction():
            add_note(need, user=admin_user, body=f"Note n° {index}")
        with transaction():
            follower = create_user(
                f"suivi{need.id}-{index}@place.example", role="admin", password="motdepasse-tres-long"
            )
        with transaction():
            star_need(need, follower)
        failed_email(db, f"need:{need.id}:relance:{index}")
        with transaction():
            reassign_match(added, ExpertFactory(), user=admin_user)
    return need


def test_the_query_count_does_not_grow_with_the_story(db, admin_user, count_queries):
    short = _lively_need(db, admin_user, 1)
    long = _lively_need(db, admin_user, 6)
    counts = []
    for need in (short, long):
        need = fresh(db, need)
        with count_queries() as counter:
            entries = need_timeline(need)
        counts.append((counter.count, len(entries)))
    (few_queries, few_entries), (many_queries, many_entries) = counts
    assert many_entries > 3 * few_entries  # the long story is really longer
    assert few_queries == many_queries


def test_the_need_page_costs_the_same_however_long_the_story(admin_client, db, admin_user, count_queries):
    short = _lively_need(db, admin_user, 1)
    long = _lively_need(db, admin_user, 6)
    urls = [f"/admin/need/details/?id={need.id}" for need in (short, long)]
    for url in urls:  # the test's session keeps what a first page loaded (user, subject…): warm both
        assert admin_client.get(url).status_code == 200
    counts = []
    for url in urls:
        with count_queries() as counter:
            assert admin_client.get(url).status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1]
