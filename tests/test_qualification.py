"""The desk's qualification verbs (``services/requests/qualification.py`` and the cancel reasons of
``services/requests/solicitations.py``), on the real territories: Lyon 69123 (postal code 69001) lies in
département 69, région 84."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text

from app.models import AuditEvent, Match, Need, OutboundEmail, Solicitation
from app.models.base import utcnow
from app.services.accounts.users import create_user
from app.services.addressbook import expert_lookup
from app.services.errors import ServiceError
from app.services.requests import qualification
from app.services.requests.cancellation import SPAM_REASON, cancel_solicitation
from app.services.requests.dispatch import route_solicitation
from app.services.requests.qualification import correct_subject, send_solicitation, suggestions
from app.services.requests.solicitations import REVIEW_MODE_NOTE, qualification_issues, submit_solicitation
from app.services.transactions import transaction
from tests.factories import (
    AntenneFactory,
    ExpertFactory,
    InstitutionFactory,
    SolicitationFactory,
    solicitation_input,
    subject,
    valid_siret,
)


@pytest.fixture
def review(app, monkeypatch):
    """Every request waits for staff."""
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")


@pytest.fixture
def staff(db):
    with transaction():
        return create_user("equipe@place.example", role="admin", password="motdepasse-tres-long")


@pytest.fixture
def held(db, review, desk_book):
    with transaction():
        return submit_solicitation(solicitation_input())


def a_referent():
    InstitutionFactory(slug="bpi")
    with transaction():
        return create_user(
            "referent@bpi.example", role="referent", institution_slug="bpi", password="motdepasse-tres-long"
        )


def keys() -> set[str]:
    from app.extensions import db

    return set(db.session.scalars(select(OutboundEmail.key)))


def count(model) -> int:
    from app.extensions import db

    return db.session.scalar(select(func.count()).select_from(model))


# ---------------------------------------------------------------- correct the subject


def test_staff_correct_the_subject_and_the_reasons_are_worked_out_again(db, app, desk_book, staff, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    solicitation = submit_solicitation(solicitation_input(subject_slug="cybersecurite"))
    assert "Aucun expert trouvé pour ce sujet sur cette commune." in solicitation.qualification_notes

    correct_subject(solicitation, subject("formation").id, user=staff)

    db.session.expire_all()
    solicitation = db.session.get(Solicitation, solicitation.id)
    assert solicitation.subject.slug == "formation"
    assert solicitation.status == "in_progress"
    # The review note stays; the note about the old subject is gone (Chloé covers training).
    assert solicitation.qualification_notes == [REVIEW_MODE_NOTE]
    event = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "Solicitation", AuditEvent.object_id == solicitation.id)
        .order_by(AuditEvent.id.desc())
    ).first()
    assert (event.user_id, event.actor) == (staff.id, staff.email)
    assert event.changes["subject_id"] == [subject("cybersecurite").id, subject("formation").id]


def test_correcting_to_a_subject_nobody_covers_says_so(db, held, staff):
    correct_subject(held, subject("cybersecurite"), user=staff)
    assert held.qualification_notes == [REVIEW_MODE_NOTE, "Aucun expert trouvé pour ce sujet sur cette commune."]
    assert qualification_issues(held) == held.qualification_notes[1:]


def test_correct_subject_refusals(db, held, staff, desk_book):
    archived = subject("export")
    archived.archived_at = utcnow()
    db.session.commit()
    for value, message in (
        (archived.id, "est archivé"),
        (subject("recrutement").id, "porte déjà sur le sujet « Recruter"),
        ("abc", "Choisissez un sujet"),
        (999_999, "Sujet inconnu"),
    ):
        with pytest.raises(ServiceError, match=message):
            correct_subject(held, value, user=staff)
    referent = a_referent()
    with pytest.raises(ServiceError, match="Seule l'équipe"):
        correct_subject(held, subject("formation").id, user=referent)
    cancel_solicitation(held, reason="out_of_scope")
    with pytest.raises(ServiceError, match="abandonnée"):
        correct_subject(held, subject("formation").id, user=staff)
    db.session.expire_all()
    assert db.session.get(Solicitation, held.id).subject.slug == "recrutement"


# ---------------------------------------------------------------- suggestions


def test_suggestions_name_the_experts_of_the_rule_and_why(db, held, desk_book):
    recruitment, training, cyber = suggestions(
        held, [subject("recrutement").id, str(subject("formation").id), subject("cybersecurite")]
    )
    assert [found.expert for found in recruitment.experts] == ["Alice CCI", "Bruno FT"]
    alice, bruno = recruitment.experts
    assert (alice.antenne, alice.institution) == ("CCI — Rhône", "CCI Lyon Métropole")
    assert alice.zone_text == "département:69 (Rhône), zone de l'antenne"
    assert bruno.zone_text == "national, zone de l'antenne"
    # Chloé's own zone (the Rhône) passes, not her antenne's région: the narrowest own entry.
    assert [(f.expert, f.zone_text) for f in training.experts] == [
        ("Chloé OPCO", "département:69 (Rhône), zone propre de l'expert")
    ]
    assert cyber.experts == []


def test_suggestions_drop_repeated_subjects_and_refuse_archived_ones(db, held, desk_book):
    found = suggestions(held, [subject("recrutement").id, str(subject("recrutement").id)])
    assert len(found) == 1
    archived = subject("export")
    archived.archived_at = utcnow()
    db.session.commit()
    with pytest.raises(ServiceError, match="archivé"):
        suggestions(held, [archived.id])


def test_suggestions_show_announced_absences(db, held, desk_book):
    desk_book["alice"].absent_until = date.today() + timedelta(days=10)
    desk_book["bruno"].absent_until = date.today() - timedelta(days=1)  # over: says nothing
    db.session.commit()
    (recruitment,) = suggestions(held, [subject("recrutement").id])
    assert recruitment.absences == {
        desk_book["alice"].id: f"Absent jusqu'au {(date.today() + timedelta(days=10)):%d/%m/%Y}"
    }


# ---------------------------------------------------------------- send


def test_send_to_the_ticked_experts_with_their_zone(db, held, desk_book, staff):
    (need,) = send_solicitation(
        held, [(subject("recrutement"), [desk_book["alice"].id, desk_book["bruno"].id])], user=staff
    )

    db.session.expire_all()
    solicitation = db.session.get(Solicitation, held.id)
    assert solicitation.status == "processed" and solicitation.processed_at is not None
    assert [n.id for n in solicitation.needs] == [need.id]
    rows = {(m.expert.full_name, m.zone, m.zone_owner, m.status) for m in solicitation.need.matches}
    assert rows == {("Alice CCI", "departement:69", "antenne", "quo"), ("Bruno FT", "national", "antenne", "quo")}
    matches = solicitation.need.matches
    # One email per expert, and the confirmation of the submission stays the only one.
    assert keys() == {f"solicitation:{held.id}:confirmation"} | {f"match:{m.id}:new" for m in matches}
    email = OutboundEmail.query.filter_by(key=f"match:{matches[0].id}:new").one()
    assert email.recipient == matches[0].expert.email
    assert "Recruter un ou plusieurs salariés" in email.subject + email.body_text
    # The audit trail names the staff member on the need and its matches.
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type.in_(["Need", "Match"]), AuditEvent.action == "create")
    ).all()
    assert len(events) == 3 and {(e.user_id, e.actor) for e in events} == {(staff.id, staff.email)}


def test_an_unticked_expert_receives_nothing_and_an_added_one_is_recorded_as_added(db, held, desk_book, staff):
    send_solicitation(
        held, [(subject("recrutement").id, [str(desk_book["alice"].id), str(desk_book["denis"].id)])], user=staff
    )

    need = db.session.get(Solicitation, held.id).need
    by_name = {m.expert.full_name: m for m in need.matches}
    assert set(by_name) == {"Alice CCI", "Denis Marseille"}  # Bruno unticked, Denis added
    assert (by_name["Alice CCI"].zone, by_name["Alice CCI"].zone_owner) == ("departement:69", "antenne")
    assert (by_name["Denis Marseille"].zone, by_name["Denis Marseille"].zone_owner) == (None, None)
    assert keys() == {f"solicitation:{held.id}:confirmation"} | {f"match:{m.id}:new" for m in need.matches}
    assert not OutboundEmail.query.filter_by(recipient="bruno@ft.example").count()
    # Each expert is told one other expert received it.
    denis_email = OutboundEmail.query.filter_by(recipient="denis@cci.example").one()
    assert "1 autre expert a aussi reçu cette demande" in denis_email.body_text


def test_split_a_request_into_two_needs(db, held, desk_book, staff):
    plan = [
        (subject("recrutement"), [desk_book["alice"].id, desk_book["bruno"].id]),
        (subject("formation"), [desk_book["chloe"].id]),
    ]
    recruitment, training = send_solicitation(held, plan, user=staff)

    solicitation = db.session.get(Solicitation, held.id)
    assert [n.subject.slug for n in solicitation.needs] == ["recrutement", "formation"]
    assert solicitation.need.id == recruitment.id
    # One company, one facility, one contact: the same business behind both needs.
    assert recruitment.facility_id == training.facility_id and recruitment.contact_id == training.contact_id
    assert recruitment.description == training.description == held.description
    assert [m.expert.full_name for m in training.matches] == ["Chloé OPCO"]
    assert (training.matches[0].zone, training.matches[0].zone_owner) == ("departement:69", "expert")
    assert count(Need) == 2 and count(Match) == 3
    expected = {f"solicitation:{held.id}:confirmation"}
    expected |= {f"match:{m.id}:new" for need in (recruitment, training) for m in need.matches}
    assert keys() == expected
    chloe = OutboundEmail.query.filter_by(recipient="chloe@opco.example").one()
    assert "Former mes salariés" in chloe.subject + chloe.body_text


def test_the_same_expert_on_two_subjects_gets_one_email_per_need(db, held, desk_book, staff):
    plan = [(subject("recrutement"), [desk_book["denis"].id]), (subject("formation"), [desk_book["denis"].id])]
    first, second = send_solicitation(held, plan, user=staff)
    assert OutboundEmail.query.filter_by(recipient="denis@cci.example").count() == 2
    assert {m.zone for m in first.matches + second.matches} == {None}


def test_a_request_held_without_confirmation_gets_one_when_sent(db, desk_book, staff):
    """A request made by hand (seed, import) never had its confirmation: sending queues it,
    naming the institutions that may call."""
    solicitation = SolicitationFactory(
        full_name="Camille Martin", email="camille@boulangerie.example", siret=valid_siret(42), postal_code="69001"
    )
    send_solicitation(
        solicitation, [(subject("recrutement"), [desk_book["alice"].id, desk_book["denis"].id])], user=staff
    )
    confirmation = OutboundEmail.query.filter_by(key=f"solicitation:{solicitation.id}:confirmation").one()
    assert confirmation.recipient == "camille@boulangerie.example"
    assert "CCI Lyon Métropole" in confirmation.body_text


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (lambda b: [], "Choisissez au moins un sujet"),
        (lambda b: [(subject("recrutement"), [])], "Aucun expert coché pour le sujet « Recruter"),
        (
            lambda b: [(subject("recrutement"), [b["alice"].id]), (subject("recrutement"), [b["bruno"].id])],
            "est choisi deux fois",
        ),
        (lambda b: [(subject("recrutement"), [b["eve"].id])], "supprimé de l'annuaire"),
        (lambda b: [(subject("recrutement"), [999_999])], "L'expert #999999 n'existe pas"),
        (lambda b: [(subject("recrutement"), ["abc"])], "n'est pas reconnu"),
        (lambda b: [("nope", [b["alice"].id])], "Choisissez un sujet"),
    ],
)
def test_send_refusals_change_nothing(db, held, desk_book, staff, plan, message):
    with pytest.raises(ServiceError, match=message):
        send_solicitation(held, plan(desk_book), user=staff)
    db.session.expire_all()
    assert db.session.get(Solicitation, held.id).status == "in_progress"
    assert count(Need) == count(Match) == 0
    assert keys() == {f"solicitation:{held.id}:confirmation"}


def test_an_expert_of_a_deleted_antenne_is_refused(db, held, desk_book, staff):
    desk_book["denis"].antenne.deleted_at = utcnow()
    db.session.commit()
    with pytest.raises(ServiceError, match="« Denis Marseille » a été supprimé"):
        send_solicitation(held, [(subject("recrutement"), [desk_book["denis"].id])], user=staff)


def test_an_archived_subject_cannot_be_sent(db, held, desk_book, staff):
    archived = subject("recrutement")
    archived.archived_at = utcnow()
    db.session.commit()
    with pytest.raises(ServiceError, match="archivé"):
        send_solicitation(held, [(archived, [desk_book["alice"].id])], user=staff)


def test_only_staff_send(db, held, desk_book):
    referent = a_referent()
    with pytest.raises(ServiceError, match="Seule l'équipe"):
        send_solicitation(held, [(subject("recrutement"), [desk_book["alice"].id])], user=referent)


def test_a_request_is_sent_once(db, held, desk_book, staff):
    send_solicitation(held, [(subject("recrutement"), [desk_book["alice"].id])], user=staff)
    for again in (
        lambda: send_solicitation(held, [(subject("formation"), [desk_book["chloe"].id])], user=staff),
        lambda: route_solicitation(held),
    ):
        with pytest.raises(ServiceError, match="déjà été transmise"):
            again()
    with pytest.raises(ServiceError, match="déjà été transmise"):
        cancel_solicitation(held, reason="incomplete")
    assert count(Need) == count(Match) == 1
    assert f"solicitation:{held.id}:canceled" not in keys()


def test_a_canceled_request_cannot_be_sent(db, held, desk_book, staff):
    cancel_solicitation(held, reason=SPAM_REASON)
    with pytest.raises(ServiceError, match="abandonnée : elle ne peut plus être transmise"):
        send_solicitation(held, [(subject("recrutement"), [desk_book["alice"].id])], user=staff)
    assert count(Need) == 0


def test_two_sends_at_once_wait_for_each_other(app, db, held, desk_book, staff):
    """The row lock: a send that starts while another holds the row waits, then reads the
    committed status and is refused, instead of creating a second set of needs."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks; PostgreSQL runs in CI")
    solicitation_id, alice_id, staff_id = held.id, desk_book["alice"].id, staff.id
    outcome: dict[str, object] = {}

    def second_click() -> None:
        with app.app_context():
            from app.extensions import db as other_db
            from app.models import User

            other = other_db.session.get(Solicitation, solicitation_id)
            try:
                send_solicitation(
                    other, [(subject("recrutement"), [alice_id])], user=other_db.session.get(User, staff_id)
                )
                outcome["result"] = "sent"
            except ServiceError as error:
                outcome["result"] = str(error)
            finally:
                other_db.session.remove()

    with db.engine.connect() as first:
        locked = first.begin()
        # The first click holds the row, as send_solicitation does, and has not committed yet.
        first.execute(text("SELECT id FROM solicitations WHERE id = :id FOR UPDATE"), {"id": solicitation_id})
        thread = threading.Thread(target=second_click)
        thread.start()
        with db.engine.connect() as watcher:
            for _ in range(10_000):
                waiting = watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar()
                if waiting or not thread.is_alive():
                    break
                watcher.rollback()
                threading.Event().wait(0.01)
        assert thread.is_alive(), outcome  # the second click did not go through the lock
        first.execute(text("UPDATE solicitations SET status = 'processed' WHERE id = :id"), {"id": solicitation_id})
        locked.commit()
    thread.join(timeout=60)
    assert "déjà été transmise" in str(outcome.get("result"))
    assert count(Need) == 0


# ---------------------------------------------------------------- experts staff add by hand


def test_expert_choices_find_active_experts_by_name_or_email(db, desk_book):
    found = qualification.expert_choices("denis")
    assert found == [
        {
            "id": desk_book["denis"].id,
            "text": f"Denis Marseille <denis@cci.example> — CCI — Bouches-du-Rhône — CCI Lyon Métropole (#{desk_book['denis'].id})",
        }
    ]
    assert [c["id"] for c in qualification.expert_choices("CCI.EXAMPLE")] == [
        desk_book["alice"].id,
        desk_book["denis"].id,
    ]
    assert qualification.expert_choices("partie") == []  # deleted
    assert qualification.expert_choices("e") == []  # too short
    assert qualification.expert_choices("100%_") == []  # LIKE wildcards are literal
    assert qualification.expert_choices("denis", scope=lambda stmt: stmt.where(False)) == []


def test_resolve_experts_from_emails_or_picked_labels(db, desk_book):
    label = qualification.expert_choices("bruno")[0]["text"]
    assert expert_lookup.resolve_experts(f"DENIS@cci.example ; {label}\nalice@cci.example") == [
        desk_book["denis"].id,
        desk_book["bruno"].id,
        desk_book["alice"].id,
    ]
    assert expert_lookup.resolve_experts("  ") == []
    assert expert_lookup.resolve_experts("denis@cci.example; denis@cci.example") == [desk_book["denis"].id]
    for typed, message in (
        ("Denis", "indiquez l'adresse email"),
        ("inconnu@nulle-part.example", "aucun expert actif"),
        (f"Eve (#{desk_book['eve'].id})", "aucun expert actif"),
    ):
        with pytest.raises(ServiceError, match=message):
            expert_lookup.resolve_experts(typed)


def test_an_email_shared_by_two_antennes_asks_to_pick_one(db, desk_book):
    ExpertFactory(antenne=AntenneFactory(name="Autre antenne"), full_name="Denis bis", email="denis@cci.example")
    with pytest.raises(ServiceError, match="plusieurs experts ont cette adresse"):
        expert_lookup.resolve_experts("denis@cci.example")


# ---------------------------------------------------------------- cancel with a reason


@pytest.mark.parametrize(
    ("reason", "note", "subject_line", "fragments"),
    [
        (
            "out_of_scope",
            "Abandonnée : Hors du champ du service",
            "Votre demande « Recruter un ou plusieurs salariés » sur Place des Entreprises",
            ["ne relève pas du champ de notre service", "service-public.fr"],
        ),
        (
            "not_a_company",
            "Abandonnée : Pas une entreprise",
            "Votre demande « Recruter un ou plusieurs salariés » sur Place des Entreprises",
            ["réservé aux entreprises", "numéro SIRET"],
        ),
        (
            "incomplete",
            "Abandonnée : Demande incomplète",
            "Votre demande « Recruter un ou plusieurs salariés » : quelques précisions nécessaires",
            ["pas assez d'éléments", "/demande/recrutement", "Nous cherchons à recruter deux apprentis"],
        ),
    ],
)
def test_cancel_reasons_email_the_business(db, app, held, staff, reason, note, subject_line, fragments):
    cancel_solicitation(held, reason=reason, user=staff)

    db.session.expire_all()
    solicitation = db.session.get(Solicitation, held.id)
    assert solicitation.status == "canceled" and solicitation.canceled_at is not None
    assert solicitation.qualification_notes[-1] == note
    email = OutboundEmail.query.filter_by(key=f"solicitation:{held.id}:canceled").one()
    assert email.recipient == "camille@boulangerie.example"
    assert email.subject == subject_line
    for body in (email.body_text, email.body_html):
        assert "Bonjour Camille Martin" in body
        for fragment in fragments:
            assert fragment in body.replace("&#39;", "'"), fragment
    assert f"{app.config['BASE_URL']}/expert/" not in email.body_text
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "Solicitation").order_by(AuditEvent.id.desc())
    ).first()
    assert (event.user_id, event.changes["status"]) == (staff.id, ["in_progress", "canceled"])


def test_the_cancel_email_escapes_what_the_business_typed(db, review, desk_book):
    solicitation = submit_solicitation(
        solicitation_input(full_name="<b>Camille</b>", description="<script>x</script> nous cherchons à recruter")
    )
    cancel_solicitation(solicitation, reason="incomplete")
    email = OutboundEmail.query.filter_by(key=f"solicitation:{solicitation.id}:canceled").one()
    assert "<script>" not in email.body_html and "&lt;script&gt;" in email.body_html
    assert "<b>Camille</b>" in email.body_text  # the text part is plain text


def test_cancel_without_notifying(db, held):
    cancel_solicitation(held, reason="incomplete", notify=False)
    assert held.qualification_notes[-1] == "Abandonnée : Demande incomplète"
    assert keys() == {f"solicitation:{held.id}:confirmation"}


def test_a_free_text_reason_sends_nothing_and_cannot_be_emailed(db, review, desk_book):
    first = submit_solicitation(solicitation_input())
    cancel_solicitation(first, reason="doublon de la #12")
    assert first.qualification_notes[-1] == "Abandonnée : doublon de la #12"
    second = submit_solicitation(solicitation_input(siret=valid_siret(8)))
    with pytest.raises(ServiceError, match="Aucun email n'est prévu pour ce motif"):
        cancel_solicitation(second, reason="doublon", notify=True)
    assert second.status == "in_progress"
    assert not any(key.endswith(":canceled") for key in keys())


def test_spam_sends_nothing_and_blocks_the_address(db, app, held, monkeypatch):
    cancel_solicitation(held, reason="spam")
    assert held.qualification_notes[-1] == "Abandonnée : spam"
    assert keys() == {f"solicitation:{held.id}:confirmation"}
    with pytest.raises(ServiceError, match="Aucun email"):
        cancel_solicitation(
            submit_solicitation(solicitation_input(email="x@y.example", siret=valid_siret(3))),
            reason="spam",
            notify=True,
        )

    monkeypatch.setitem(app.config, "ROUTING_MODE", "auto")
    again = submit_solicitation(solicitation_input(email="CAMILLE@boulangerie.example", siret=valid_siret(9)))
    assert again.status == "in_progress"
    assert any("abandonnée comme spam" in note for note in again.qualification_notes)


def test_a_request_is_canceled_once_and_emails_once(db, held):
    cancel_solicitation(held, reason="out_of_scope")
    with pytest.raises(ServiceError, match="déjà abandonnée"):
        cancel_solicitation(held, reason="incomplete")
    assert OutboundEmail.query.filter(OutboundEmail.key.like("%:canceled")).count() == 1
    assert held.qualification_notes[-1] == "Abandonnée : Hors du champ du service"
