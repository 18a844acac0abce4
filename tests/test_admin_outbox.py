"""« Courriels » in the back office: the outbox listed, searched, detailed and resent by staff only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import OutboundEmail
from app.models.base import utcnow
from app.services.messaging.outbox import LOGGED_ONLY, message_id_for
from tests.factories import InstitutionFactory
from tests.helpers import body, csrf_token_from, login


def email(db, key: str, **fields) -> OutboundEmail:
    values = {
        "recipient": "marie@entreprise.example",
        "subject": f"Votre demande {key}",
        "body_text": f"Bonjour,\nVotre demande <{key}> est bien reçue.\n",
        "state": "sent",
        **fields,
    }
    row = OutboundEmail(key=key, **values)
    db.session.add(row)
    db.session.commit()
    return row


def post_action(client, ids: list[int], action: str = "renvoyer"):
    page = client.get("/admin/outbox/")
    return client.post(
        "/admin/outbox/action/",
        data={"action": action, "rowid": [str(i) for i in ids], "csrf_token": csrf_token_from(body(page))},
    )


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/admin/outbox/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/connexion")


def test_referents_are_refused(client, db):
    from app.services.accounts.users import create_user

    institution = InstitutionFactory(slug="bpi")
    create_user(
        "referent@bpi.example", role="referent", institution_slug=institution.slug, password="motdepasse-tres-long"
    )
    assert login(client, "referent@bpi.example").status_code == 302
    assert client.get("/admin/outbox/").status_code == 403
    assert client.post("/admin/outbox/action/", data={"action": "renvoyer", "rowid": ["1"]}).status_code in (400, 403)


def test_the_list_shows_state_attempts_and_errors_in_french(admin_client, db):
    email(db, "solicitation:1:confirmation", sent_at=utcnow())
    email(
        db,
        "match:1:new",
        recipient="expert@cci.example",
        state="queued",
        attempts=2,
        last_error="Refus du serveur SMTP (451 Greylisting)",
        next_attempt_at=utcnow() + timedelta(minutes=5),
    )
    email(db, "match:2:new", state="failed", attempts=8, last_error="Destinataire refusé par le serveur SMTP (550)")
    email(db, "demo:1", last_error=LOGGED_ONLY)
    page = body(admin_client.get("/admin/outbox/"))
    for text in [
        "Courriels",
        "Suivi",
        "Destinataire",
        "Tentatives",
        "Dernière erreur",
        "expert@cci.example",
        "Votre demande match:1:new",
        "Envoyé",
        "En attente d&#39;envoi",
        "Échec définitif",
        "Journalisé, non envoyé",
        "451 Greylisting",
        "Renvoyer",
    ]:
        assert text in page, text
    # Read-only: no create, edit or delete.
    assert "/admin/outbox/new/" not in page and "/admin/outbox/edit/" not in page
    assert admin_client.get("/admin/outbox/new/").status_code in (302, 403, 404)


def test_filter_by_state_and_search(admin_client, db):
    email(db, "match:1:new", recipient="expert@cci.example", state="failed", last_error="550")
    email(db, "solicitation:9:confirmation", recipient="gerant@boulangerie.example")
    failed = body(admin_client.get("/admin/outbox/?flt0_0=failed"))
    assert "expert@cci.example" in failed and "gerant@boulangerie.example" not in failed
    by_key = body(admin_client.get("/admin/outbox/?search=solicitation:9"))
    assert "gerant@boulangerie.example" in by_key and "expert@cci.example" not in by_key
    by_recipient = body(admin_client.get("/admin/outbox/?search=cci.example"))
    assert "expert@cci.example" in by_recipient and "gerant@boulangerie.example" not in by_recipient


def test_details_show_the_text_body_escaped_and_the_message_id(admin_client, db):
    row = email(db, "solicitation:1:confirmation")
    page = body(admin_client.get(f"/admin/outbox/details/?id={row.id}"))
    assert "Votre demande &lt;solicitation:1:confirmation&gt; est bien reçue." in page
    assert message_id_for(row.key).replace("<", "&lt;").replace(">", "&gt;") in page
    assert "Renvoyer ce courriel" in page


def test_resend_a_failed_email(admin_client, db):
    row = email(db, "match:1:new", state="failed", attempts=8, last_error="Destinataire refusé (550)")
    response = post_action(admin_client, [row.id])
    assert response.status_code == 302
    db.session.expire_all()
    resent = db.session.get(OutboundEmail, row.id)
    # Back in the queue with its attempts reset, then delivered at once (inline, no MAIL_SERVER: logged).
    assert (resent.state, resent.attempts, resent.last_error) == ("sent", 0, LOGGED_ONLY)
    assert "1 courriel(s) remis en file d&#39;envoi." in body(admin_client.get("/admin/outbox/"))


def test_resend_a_sent_email_keeps_its_history(admin_client, db):
    sent_at = utcnow() - timedelta(days=2)
    row = email(db, "solicitation:1:confirmation", sent_at=sent_at, attempts=1)
    assert post_action(admin_client, [row.id]).status_code == 302
    db.session.expire_all()
    rows = {r.key: r for r in db.session.scalars(select(OutboundEmail))}
    assert set(rows) == {"solicitation:1:confirmation", "solicitation:1:confirmation:renvoi:1"}
    original = rows["solicitation:1:confirmation"]
    assert (original.state, original.attempts) == ("sent", 1)
    assert original.sent_at.replace(tzinfo=None) == sent_at.replace(tzinfo=None)
    copy = rows["solicitation:1:confirmation:renvoi:1"]
    assert (copy.recipient, copy.subject, copy.body_text) == (original.recipient, original.subject, original.body_text)
    assert message_id_for(copy.key) != message_id_for(original.key)


def test_resend_from_the_details_page(admin_client, db):
    row = email(db, "match:1:new", state="failed", last_error="550")
    page = body(admin_client.get(f"/admin/outbox/details/?id={row.id}"))
    response = admin_client.post(
        "/admin/outbox/action/",
        data={"action": "renvoyer", "rowid": str(row.id), "csrf_token": csrf_token_from(page)},
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(OutboundEmail, row.id).state == "sent"


def test_the_list_costs_the_same_queries_for_5_or_50_rows(admin_client, db, count_queries):
    def measure() -> int:
        with count_queries() as counter:
            assert admin_client.get("/admin/outbox/").status_code == 200
        return counter.count

    for n in range(5):
        email(db, f"a:{n}")
    few = measure()
    for n in range(45):
        email(db, f"b:{n}")
    assert measure() == few
