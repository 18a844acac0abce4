"""Replies by email: a real-looking reply becomes a clean comment; anything unverified is held."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.cli import EX_TEMPFAIL
from app.models import Comment, InboundMessage, OutboundEmail
from app.services.errors import ServiceError
from app.services.messaging import reply_addresses
from app.services.messaging.inbound import discard_inbound, receive_email
from app.services.messaging.reply_addresses import reply_address, reply_token, verify_token
from app.services.messaging.reply_parsing import clean_reply, html_to_text
from tests.factories import covering_expert, make_need, solicitation_input
from tests.helpers import INBOUND_DOMAIN

DATA = Path(__file__).parent / "data" / "inbound"
SECRET = "un-secret-partage-assez-long"


def fixture(name: str, *, reply: str, sender: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return raw.replace(b"REPLY_ADDRESS", reply.encode()).replace(b"EXPERT_ADDRESS", sender.encode())


def simple(
    *, to: str, sender: str, body: str = "Je m'en occupe.", message_id: str = "<simple@client.example>"
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Re: demande\r\nMessage-ID: {message_id}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def comment_count() -> int:
    from app.extensions import db

    return db.session.scalar(select(func.count(Comment.id)))


# ---------------------------------------------------------------- the address


def test_no_reply_address_without_a_domain(db, app, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_DOMAIN", None)
    match = make_need(1).matches[0]
    assert reply_address(match) is None


def test_the_address_is_a_lowercase_plus_address_that_survives_case_changes(db, domain):
    match = make_need(1).matches[0]
    address = reply_address(match)
    local, at = address.split("@")
    assert at == INBOUND_DOMAIN and local.startswith("reponse+") and len(local) <= 64
    assert local == local.lower() and set(local) <= set("abcdefghijklmnopqrstuvwxyz0123456789+-")
    token = local.split("+", 1)[1]
    assert verify_token(token).match_id == match.id
    assert verify_token(token.upper()).match_id == match.id  # a mail server that uppercases


def test_a_token_signed_with_another_key_is_refused(db, app, domain, monkeypatch):
    match = make_need(1).matches[0]
    monkeypatch.setitem(app.config, "SECRET_KEY", "another-key")
    forged = reply_token(match)
    monkeypatch.setitem(app.config, "SECRET_KEY", "test-only-not-secret")
    with pytest.raises(ServiceError, match="falsifiée"):
        verify_token(forged)


def test_the_match_new_email_carries_the_reply_to_when_the_domain_is_set(db, domain):
    from app.services.requests.solicitations import submit_solicitation

    covering_expert("departement:69")
    solicitation = submit_solicitation(solicitation_input())
    match = solicitation.need.matches[0]
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{match.id}:new"))
    assert email.reply_to.startswith("reponse+") and email.reply_to.endswith(f"@{INBOUND_DOMAIN}")
    token = email.reply_to.split("+", 1)[1].split("@")[0]
    assert verify_token(token).match_id == match.id


def test_the_match_new_email_has_no_reply_to_without_the_domain(db, app, monkeypatch):
    from app.services.requests.solicitations import submit_solicitation

    monkeypatch.setitem(app.config, "INBOUND_EMAIL_DOMAIN", None)
    covering_expert("departement:69")
    match = submit_solicitation(solicitation_input()).need.matches[0]
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{match.id}:new"))
    assert email.reply_to is None


# ---------------------------------------------------------------- a real-looking reply


def test_a_gmail_reply_lands_as_a_clean_comment_with_its_attachment(db, domain):
    need = make_need(2)
    match = need.matches[0]
    raw = fixture("reply_gmail.eml", reply=reply_address(match), sender=match.expert.email)

    message = receive_email(raw)

    assert message.state == "posted", message.reason
    comment = db.session.get(Comment, message.comment_id)
    assert comment.need_id == need.id and comment.expert_id == match.expert_id and comment.source == "email"
    assert comment.body == (
        "Bonjour,\n\n"
        "J'ai appelé Mme Durand ce matin : nous nous voyons mardi à 14 h pour\n"
        "préparer l'offre d'apprentissage. Je joins le devis de la formation.\n\n"
        "Bien cordialement,"
    )
    assert comment.attachments == ["devis.pdf"]
    assert message.attachments == ["devis.pdf"]
    assert message.sender == match.expert.email
    assert message.subject == "Re: Nouvelle demande : recrutement à Lyon"


def test_the_same_reply_delivered_twice_makes_one_comment(db, domain):
    match = make_need(1).matches[0]
    raw = fixture("reply_gmail.eml", reply=reply_address(match), sender=match.expert.email)
    first = receive_email(raw)
    second = receive_email(raw)
    assert first.id == second.id and first.state == "posted"
    assert comment_count() == 1
    assert db.session.scalar(select(func.count(InboundMessage.id))) == 1


def test_a_reply_without_message_id_delivered_twice_makes_one_comment(db, domain):
    match = make_need(1).matches[0]
    raw = simple(to=reply_address(match), sender=match.expert.email).replace(
        b"Message-ID: <simple@client.example>\r\n", b""
    )
    assert receive_email(raw).state == "posted"
    assert receive_email(raw).state == "posted"
    assert comment_count() == 1


def test_an_outlook_reply_in_english_loses_its_original_message(db, domain):
    match = make_need(1).matches[0]
    raw = fixture("reply_outlook.eml", reply=reply_address(match), sender=match.expert.email.upper())
    message = receive_email(raw)
    assert message.state == "posted", message.reason
    assert db.session.get(Comment, message.comment_id).body == (
        "Hello,\n\nI will call the company back on Monday and keep you posted.\n\nRegards,\nClaire"
    )


def test_an_html_only_reply_is_read_without_its_quote(db, domain):
    match = make_need(1).matches[0]
    html = (
        "<html><head><style>p{color:red}</style></head><body><p>Rendez-vous pris&nbsp;!</p><div>Mardi<br>14 h</div>"
        '<div class="gmail_quote"><div>Le lun. a écrit :</div><blockquote>Ancien <b>message</b></blockquote></div>'
        "</body></html>"
    )
    raw = (
        f"From: {match.expert.email}\r\nTo: {reply_address(match)}\r\nSubject: Re\r\nMessage-ID: <html@x>\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    ).encode()
    message = receive_email(raw)
    assert message.state == "posted", message.reason
    assert db.session.get(Comment, message.comment_id).body == "Rendez-vous pris !\n\nMardi\n14 h"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oui.\n\nLe mar. 2 déc. 2026 à 09:00, Julie <j@x.example> a écrit :\n> question", "Oui."),
        ("Yes.\n\nOn Tue, Dec 2, 2026 at 9:00 AM Julie <\nj@x.example> wrote:\n> question", "Yes."),
        ("D'accord.\n\nDe : Place des Entreprises\nEnvoyé : mardi 2 décembre 2026 09:00\nÀ : Claire", "D'accord."),
        ("OK.\n________________________________\nFrom: Place\nSent: Tuesday\nTo: Claire", "OK."),
        ("Bien reçu.\n\nEnvoyé de mon iPhone", "Bien reçu."),
        ("Noted.\n\nSent from my Galaxy", "Noted."),
        ("Merci.\n-- \nClaire Martin\n04 72 00 00 00", "Merci."),
        ("> cité en tête\nMa réponse entre les lignes.\n> autre citation", "Ma réponse entre les lignes."),
        ("Le devis est joint.\nLe client est d'accord.", "Le devis est joint.\nLe client est d'accord."),
        ("Ligne\x0cavec\x00 contrôle", "Ligneavec contrôle"),
    ],
)
def test_quotes_and_signatures_are_stripped(text, expected):
    assert clean_reply(text) == expected


def test_html_keeps_line_breaks_and_drops_invisible_parts():
    assert html_to_text("<p>Un</p><p>Deux<br/>Trois</p><script>x()</script>") == "Un\n\nDeux\nTrois"
    assert html_to_text('<div>Réponse</div><div id="appendonsend"></div><div>De : ancien</div>') == "Réponse"


# ---------------------------------------------------------------- held, never posted


def test_a_forged_token_is_held(db, domain):
    match = make_need(1).matches[0]
    address = reply_address(match)
    token = address.split("+", 1)[1].split("@")[0]
    forged = address.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b"))
    message = receive_email(simple(to=forged, sender=match.expert.email))
    assert message.state == "held" and "falsifiée" in message.reason
    assert message.text.strip() == "Je m'en occupe."
    assert comment_count() == 0


def test_a_token_for_another_match_id_is_held(db, domain):
    need = make_need(2)
    first, second = need.matches
    token = reply_token(first)
    tampered = token.replace(token.split("-", 1)[0], reply_addresses._b36(second.id), 1)
    message = receive_email(simple(to=f"reponse+{tampered}@{INBOUND_DOMAIN}", sender=second.expert.email))
    assert message.state == "held" and "falsifiée" in message.reason
    assert comment_count() == 0


def test_an_expired_token_is_held(db, app, domain, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_REPLY_MAX_AGE_DAYS", 30)
    match = make_need(1).matches[0]
    old = reply_address(match, issued_at=time.time() - 31 * 86400)
    message = receive_email(simple(to=old, sender=match.expert.email))
    assert message.state == "held" and "expirée" in message.reason and "30 jours" in message.reason
    assert comment_count() == 0


def test_a_reply_from_another_address_is_held(db, domain):
    match = make_need(1).matches[0]
    message = receive_email(simple(to=reply_address(match), sender="usurpateur@pirate.example"))
    assert message.state == "held" and "Expéditeur non reconnu" in message.reason
    assert message.sender == "usurpateur@pirate.example"
    assert comment_count() == 0


def test_a_reply_from_the_other_expert_of_the_need_is_held(db, domain):
    first, second = make_need(2).matches
    message = receive_email(simple(to=reply_address(first), sender=second.expert.email))
    assert message.state == "held" and "Expéditeur non reconnu" in message.reason
    assert comment_count() == 0


def test_a_reply_for_a_deleted_match_is_held(db, domain):
    need = make_need(1)
    match = need.matches[0]
    address, sender = reply_address(match), match.expert.email
    db.session.delete(match)
    db.session.commit()
    message = receive_email(simple(to=address, sender=sender))
    assert message.state == "held" and "introuvable" in message.reason
    assert comment_count() == 0


def test_a_reply_from_a_deleted_expert_is_held(db, domain):
    from app.models.base import utcnow

    match = make_need(1).matches[0]
    match.expert.deleted_at = utcnow()
    db.session.commit()
    message = receive_email(simple(to=reply_address(match), sender=match.expert.email))
    assert message.state == "held" and "retiré de l'annuaire" in message.reason
    assert comment_count() == 0


def test_a_message_without_our_address_is_held(db, domain):
    message = receive_email(simple(to="contact@place-des-entreprises.example", sender="a@b.example"))
    assert message.state == "held" and "Aucune adresse de réponse" in message.reason


def test_an_empty_reply_is_held(db, domain):
    match = make_need(1).matches[0]
    body = "\r\nLe jeu. 27 nov. 2026 à 10:12, Place <c@p.example> a écrit :\r\n> Bonjour"
    message = receive_email(simple(to=reply_address(match), sender=match.expert.email, body=body))
    assert message.state == "held" and "vide" in message.reason
    assert comment_count() == 0


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff\xfe garbage", b"From: \r\nTo: <<<@@@>>>\r\n\r\n", b"Subject: =?x?q?\r\n"]
)
def test_garbage_is_held_not_raised(db, domain, raw):
    message = receive_email(raw)
    assert message.state == "held" and message.reason


def test_staff_discard_a_held_reply_but_not_a_posted_one(db, domain):
    match = make_need(1).matches[0]
    held = receive_email(simple(to=reply_address(match), sender="x@pirate.example", message_id="<a@x>"))
    discard_inbound(held)
    assert held.state == "discarded"
    posted = receive_email(simple(to=reply_address(match), sender=match.expert.email, message_id="<b@x>"))
    with pytest.raises(ServiceError, match="déjà été publiée"):
        discard_inbound(posted)


# ---------------------------------------------------------------- the CLI


def test_cli_deliver_reads_stdin_and_says_what_happened(app, db, domain):
    match = make_need(1).matches[0]
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["inbound", "deliver"], input=simple(to=reply_address(match), sender=match.expert.email))
    assert ok.exit_code == 0, ok.output
    assert "Réponse publiée : commentaire #" in ok.output
    held = runner.invoke(
        args=["inbound", "deliver"], input=simple(to=reply_address(match), sender="x@y.example", message_id="<2@x>")
    )
    assert held.exit_code == 0  # stored: the MTA must not bounce it
    assert "Réponse retenue pour l'équipe" in held.output and "Expéditeur non reconnu" in held.output
    assert comment_count() == 1


def test_cli_deliver_asks_the_mta_to_retry_on_an_internal_failure(app, db, domain, monkeypatch):
    def broken(_raw):
        raise RuntimeError("base de données indisponible")

    monkeypatch.setattr("app.cli.receive_email", broken)  # the command calls the service verb it imported
    result = app.test_cli_runner().invoke(args=["inbound", "deliver"], input=b"From: a@b\r\n\r\nx")
    assert result.exit_code == EX_TEMPFAIL
    assert "Erreur interne" in result.output


# ---------------------------------------------------------------- the endpoint


def test_endpoint_is_absent_without_a_secret(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", None)
    assert client.post("/inbound/email", data=b"x", headers={"X-Inbound-Secret": "x"}).status_code == 404


def test_endpoint_refuses_a_wrong_secret(client, app, db, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", SECRET)
    for headers in ({}, {"X-Inbound-Secret": "mauvais"}, {"X-Inbound-Secret": "é"}):
        response = client.post("/inbound/email", data=b"From: a@b\r\n\r\nx", headers=headers)
        assert response.status_code == 403 and "error" in response.get_json()
    assert db.session.scalar(select(func.count(InboundMessage.id))) == 0


def test_endpoint_posts_a_raw_reply(client, app, db, domain, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", SECRET)
    match = make_need(1).matches[0]
    raw = fixture("reply_gmail.eml", reply=reply_address(match), sender=match.expert.email)
    response = client.post(
        "/inbound/email", data=raw, headers={"X-Inbound-Secret": SECRET, "Content-Type": "message/rfc822"}
    )
    assert response.status_code == 200
    assert response.get_json()["state"] == "posted" and response.get_json()["reason"] is None
    assert comment_count() == 1


def test_endpoint_accepts_a_multipart_form_and_holds_a_forgery(client, app, db, domain, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", SECRET)
    match = make_need(1).matches[0]
    raw = simple(to=reply_address(match), sender="autre@pirate.example")
    response = client.post(
        "/inbound/email",
        data={"message": raw.decode()},
        headers={"X-Inbound-Secret": SECRET},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "held" and "Expéditeur non reconnu" in body["reason"]
    assert comment_count() == 0


def test_endpoint_never_fails_on_garbage(client, app, db, domain, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", SECRET)
    for payload in (b"\x00\x01\x02", b"\xff" * 1000, b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n"):
        response = client.post("/inbound/email", data=payload, headers={"X-Inbound-Secret": SECRET})
        assert response.status_code == 200 and response.get_json()["state"] == "held"
    assert client.post("/inbound/email", data=b"", headers={"X-Inbound-Secret": SECRET}).status_code == 400


# ---------------------------------------------------------------- the back office


def test_admin_lists_details_and_discards(admin_client, db, domain):
    match = make_need(1).matches[0]
    held = receive_email(simple(to=reply_address(match), sender="usurpateur@pirate.example"))
    listing = admin_client.get("/admin/inbound_messages/?flt0_0=held")
    html = listing.get_data(as_text=True)
    assert listing.status_code == 200
    assert "usurpateur@pirate.example" in html and "Retenue" in html and "Expéditeur non reconnu" in html
    details = admin_client.get(f"/admin/inbound_messages/details/?id={held.id}")
    assert details.status_code == 200 and "Je m&#39;en occupe." in details.get_data(as_text=True)
    assert admin_client.get("/admin/inbound_messages/new/").status_code in (302, 403, 404)

    from tests.helpers import csrf_token_from

    token = csrf_token_from(html)
    response = admin_client.post(
        "/admin/inbound_messages/action/",
        data={"action": "ecarter", "rowid": str(held.id), "csrf_token": token},
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(InboundMessage, held.id).state == "discarded"
