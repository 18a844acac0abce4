"""Findings 10 (header parsing), 13 and 14 of the security review and fault campaign: what an
incoming email may carry (a NUL in its Message-ID or an attachment's name, 20,000 addresses in
« To: ») is stored clean, read at bounded cost, and never blocks the thread's notifications."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import Comment, InboundMessage, OutboundEmail
from app.models.base import utcnow
from app.services.messaging.discussion import notify_pending_comments
from app.services.messaging.inbound import MAX_ADDRESSES, _addresses, _header, receive_email
from app.services.messaging.reply_addresses import reply_address
from app.services.transactions import transaction
from tests.factories import make_need

SECRET = "un-secret-partage-assez-long"


def _reply(
    match, *, message_id: str = "<r1@client.example>", attachment: str | None = None, to_extra: str = ""
) -> bytes:
    boundary = "frontiere"
    parts = [
        f"From: {match.expert.email}",
        f"To: {reply_address(match)}{to_extra}",
        "Subject: Re: demande",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Je rappelle l'entreprise demain matin.",
    ]
    if attachment is not None:
        parts += [
            f"--{boundary}",
            "Content-Type: application/pdf",
            f'Content-Disposition: attachment; filename="{attachment}"',
            "Content-Transfer-Encoding: base64",
            "",
            "JVBERi0xLjQK",
        ]
    parts += [f"--{boundary}--", ""]
    return "\r\n".join(parts).encode()


def test_a_nul_in_the_message_id_is_stored_clean(db, domain):
    match = make_need(1).matches[0]
    with transaction():
        message = receive_email(_reply(match, message_id="<abc\x00def@client.example>"))
    assert message.state == "posted", message.reason
    assert "\x00" not in message.message_id


def test_the_endpoint_answers_a_nul_message_id_without_a_500(client, app, db, domain, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_SECRET", SECRET)
    match = make_need(1).matches[0]
    response = client.post(
        "/inbound/email",
        data=_reply(match, message_id="<x\x00y@client.example>"),
        headers={"X-Inbound-Secret": SECRET, "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 200 and response.get_json()["state"] == "posted"


def test_a_nul_in_an_attachment_name_blocks_no_notification(db, domain):
    need = make_need(2, statuses=("quo", "taking_care"))  # the colleague who took it is told
    writer = need.matches[0]
    with transaction():
        receive_email(_reply(writer, attachment="devis\x00.pdf"))
    comment = db.session.scalar(select(Comment))
    assert comment.attachments == ["devis.pdf"]
    notify_pending_comments(now=utcnow() + timedelta(seconds=61))  # (inline already without a worker)
    digest = [e for e in db.session.scalars(select(OutboundEmail)) if e.key.startswith("comments:")]
    assert digest and all("\x00" not in e.body_text for e in digest)
    assert db.session.scalar(select(Comment.notified_at)) is not None


def test_twenty_thousand_recipients_are_read_at_bounded_cost(db, domain):
    match = make_need(1).matches[0]
    crowd = "".join(f", personne{n}@ailleurs.example" for n in range(20_000))
    raw = _reply(match, to_extra=crowd)
    import email
    import email.policy

    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(_addresses(_header(message, "To"))) <= MAX_ADDRESSES
    with transaction():
        stored = receive_email(raw)
    # Our reply address comes first in « To: »: still found, still posted.
    assert stored.state == "posted", stored.reason
    assert len(db.session.scalar(select(InboundMessage.recipient)) or "") < 400


# ---------------------------------------------------------------- finding 8: the sender's authentication


def _with_results(raw: bytes, *results: str) -> bytes:
    headers = "".join(f"Authentication-Results: {value}\r\n" for value in results)
    return headers.encode() + raw


def test_a_reply_the_mta_could_not_authenticate_is_held(db, domain):
    match = make_need(1).matches[0]
    expert_domain = match.expert.email.split("@")[1]
    failed = _with_results(
        _reply(match, message_id="<spoof@x>"),
        f"mx.place.example; dkim=fail header.d={expert_domain}; spf=softfail smtp.mailfrom=pirate.example",
    )
    with transaction():
        held = receive_email(failed)
    assert held.state == "held"
    assert held.reason.startswith("Authentification non vérifiée : ni DKIM ni SPF ne valident le domaine")
    other_domain = _with_results(
        _reply(match, message_id="<spoof2@x>"), "mx.place.example; dkim=pass header.d=pirate.example"
    )
    with transaction():
        assert receive_email(other_domain).state == "held"


def test_dkim_or_spf_for_the_experts_domain_lets_the_reply_in(db, domain):
    match = make_need(1).matches[0]
    expert_domain = match.expert.email.split("@")[1]
    for n, result in enumerate(
        (
            f"mx.place.example; dkim=pass header.d={expert_domain} header.s=sel; spf=fail smtp.mailfrom=x",
            f"mx.place.example; spf=pass smtp.mailfrom={match.expert.email}",
            f"mx.place.example; dkim=pass header.d=mail.{expert_domain}",
        )
    ):
        with transaction():
            posted = receive_email(_with_results(_reply(match, message_id=f"<ok{n}@x>"), result))
        assert posted.state == "posted", (result, posted.reason)


def test_without_results_the_mode_decides(app, db, domain, monkeypatch):
    match = make_need(1).matches[0]
    with transaction():
        assert receive_email(_reply(match, message_id="<auto@x>")).state == "posted"  # auto: nothing to check
    monkeypatch.setitem(app.config, "INBOUND_REQUIRE_AUTH", "on")
    with transaction():
        held = receive_email(_reply(match, message_id="<on@x>"))
    assert held.state == "held" and held.reason.startswith("Authentification absente")


def test_only_the_mtas_own_results_count(app, db, domain, monkeypatch):
    """A sender can write an « Authentication-Results » of its own: with the MTA's authserv-id
    configured, only the MTA's header is read."""
    monkeypatch.setitem(app.config, "INBOUND_AUTHSERV_ID", "mx.place.example")
    match = make_need(1).matches[0]
    expert_domain = match.expert.email.split("@")[1]
    forged = _with_results(
        _reply(match, message_id="<forged@x>"),
        f"faux.example; dkim=pass header.d={expert_domain}",
        "mx.place.example; dkim=fail header.d=pirate.example",
    )
    with transaction():
        assert receive_email(forged).state == "held"
