"""Emails of any shape get out: SMTP refuses lines over 998 characters (aiosmtpd, like a real
relay, answers « 500 Line too long »), so every text and HTML part is quoted-printable and
arrives as typed; a refusal of the message itself is told apart from the recipient's."""

from __future__ import annotations

import html
import re
import smtplib
from email import message_from_bytes
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.extensions import db as _db
from app.models import OutboundEmail
from app.services.messaging.delivery import deliver_emails, describe_failure
from app.services.messaging.email_wire import build_message
from app.services.messaging.outbox import queue_email
from app.services.transactions import transaction
from tests.plugins.mail import add_test_templates

# What people type, and worse: one paragraph of 5,000 characters, accented or not, emoji,
# right-to-left text, a line of 10,000 « = » (quoted-printable's own escape character).
TEXTS = {
    "ascii": ("Nous cherchons a recruter deux boulangers en CDI. " * 100).strip(),
    "accented": ("Nous souhaitons étaler nos dettes sociales, l'échéance approche à grands pas. " * 64).strip(),
    "emoji": "Merci 🙏 pour votre aide 🥖🇫🇷 " * 200,
    "rtl": "نحن نبحث عن مساعدة لتوظيف عاملين في المخبز " * 120,
    "equals": "=" * 10_000,
    "mixed lines": "Ligne courte\n" + "é" * 3_000 + "\n\n.\n" + "From the start\n" + "x" * 1_500 + " \n fin",
}


def _shown(content: str) -> str:
    """Text parts travel with CRLF line ends (SMTP's canonical form); a reader sees line breaks."""
    return content.replace("\r\n", "\n")


def _text_part(message: EmailMessage) -> str:
    return _shown(message.get_body(("plain",)).get_content())


def _html_part(message: EmailMessage) -> str:
    return _shown(message.get_body(("html",)).get_content())


def wire_bytes(text: str, html_text: str) -> bytes:
    return build_message(
        sender="Place des Entreprises <a@example.fr>",
        recipient="b@example.fr",
        subject="Essai",
        body_text=text,
        body_html=html_text,
        message_id="<essai@example.fr>",
    )


def _typed(text: str) -> str:
    """What a mail client shows of ``text``: the same, line ends as the reader's system writes them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_the_test_relay_refuses_overlong_lines_as_real_ones_do(smtp_server):
    """Guard: without this limit every test below would pass whatever the encoding."""
    raw = b"From: a@example.fr\r\nTo: b@example.fr\r\nSubject: x\r\n\r\n" + b"x" * 1200 + b"\r\n"
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("a@example.fr", ["b@example.fr"], raw)
    assert refused.value.smtp_code == 500 and b"Line too long" in refused.value.smtp_error
    failure = describe_failure(refused.value)
    assert (failure.cause, failure.retryable) == ("message", False)
    assert "défaut du service" in failure.reason


def test_without_quoted_printable_a_paragraph_is_one_overlong_line(app_ctx):
    """Guard: Flask-Mail's own message sends the text unencoded, the defect this module fixes."""
    from flask_mail import Message as FlaskMailMessage

    raw = FlaskMailMessage("x", recipients=["b@example.fr"], body=TEXTS["accented"], sender="a@example.fr").as_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) > 998
    wire = wire_bytes(TEXTS["accented"], "<p>x</p>")
    assert max(len(line) for line in wire.split(b"\r\n")) <= 998
    assert wire.count(b"Content-Transfer-Encoding: quoted-printable") == 2
    parts = [part for part in message_from_bytes(wire).walk() if not part.is_multipart()]
    assert max(len(line) for part in parts for line in part.get_payload().splitlines()) <= 76


@pytest.fixture
def text_app(smtp_app):
    add_test_templates(smtp_app)
    return smtp_app


@pytest.mark.parametrize("name", list(TEXTS))
def test_every_shape_of_text_reaches_the_relay_intact(text_app, smtp_server, name):
    text = TEXTS[name]
    with text_app.app_context():
        queue_email(f"shape:{name}", to="expert@cci.example", template="test_text", context={"text": text})
        _db.session.commit()
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"shape:{name}"))
        assert (email.state, email.last_error) == ("sent", None)
    [message] = smtp_server.messages
    assert _text_part(message) == _typed(text).strip() + "\n"
    assert _typed(text).strip() in html.unescape(_html_part(message))


@pytest.mark.parametrize(
    ("code", "answer", "cause", "retryable"),
    [
        (500, "Line too long (see RFC5321 4.5.3.1.6)", "message", False),
        (552, "Error: Too much mail data", "message", False),
        (554, "5.3.4 Message too big for system", "message", False),
        (554, "5.6.0 Message content rejected", "message", False),
        (550, "5.1.1 Mailbox unavailable", "recipient", False),
        (451, "Greylisted, try again later", "relay", True),
    ],
)
def test_a_refusal_of_the_message_itself_is_ours_not_the_recipients(
    smtp_app, smtp_server, code, answer, cause, retryable
):
    smtp_server.refuse(code, answer)
    add_test_templates(smtp_app)
    with smtp_app.app_context():
        queue_email("refused", to="expert@cci.example", template="test_text", context={"text": "Bonjour"})
        _db.session.commit()
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == "refused"))
        assert email.failure_cause == cause
        assert email.state == ("queued" if retryable else "failed")
        assert str(code) in email.last_error


def test_a_size_refused_at_mail_from_is_ours_too():
    failure = describe_failure(smtplib.SMTPSenderRefused(552, b"5.3.4 Message size exceeds fixed limit", "a@x.fr"))
    assert (failure.cause, failure.retryable) == ("message", False)
    other = describe_failure(smtplib.SMTPSenderRefused(550, b"Sender not allowed", "a@x.fr"))
    assert (other.cause, other.retryable) == ("relay", True)


def test_a_message_defect_is_logged_as_an_error(smtp_app, smtp_server, caplog):
    smtp_server.refuse(500, "Line too long (see RFC5321 4.5.3.1.6)")
    add_test_templates(smtp_app)
    with smtp_app.app_context():
        queue_email("defect", to="expert@cci.example", template="test_text", context={"text": "Bonjour"})
        _db.session.commit()
    [record] = [r for r in caplog.records if "défaut du message" in r.getMessage()]
    assert record.levelname == "ERROR"


def test_rows_failed_for_our_defect_are_resent_once_fixed(smtp_app, smtp_server):
    """The rows refused before the fix: « Renvoyer » sends them, now encoded, to the same relay."""
    from app.services.messaging.outbox import resend_email

    add_test_templates(smtp_app)
    with smtp_app.app_context():
        _db.session.add(
            OutboundEmail(
                key="old",
                recipient="expert@cci.example",
                subject="Ancien",
                body_text=TEXTS["accented"],
                body_html=f"<p>{TEXTS['accented']}</p>",
                state="failed",
                attempts=1,
                failure_cause="message",
                last_error="Refus du serveur SMTP (500 Line too long (see RFC5321 4.5.3.1.6))",
            )
        )
        _db.session.commit()
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == "old"))
        with transaction():
            resend_email(email)
        _db.session.expire_all()
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == "old"))
        assert (email.state, email.failure_cause) == ("sent", None)
    [message] = smtp_server.messages
    assert _text_part(message) == TEXTS["accented"]


def test_a_long_subject_is_cut_to_what_the_outbox_stores(text_app, smtp_server):
    with text_app.app_context():
        queue_email("title", to="a@example.fr", template="test_text", context={"text": "x", "title": "É" * 400})
        _db.session.commit()
    [message] = smtp_server.messages
    assert len(message["Subject"]) == 300 and message["Subject"].endswith("…")


# ---------------------------------------------------------------- properties

# Whatever people can type into a textarea: any printable text, line breaks of every system,
# long runs without a space.
typed_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=6_000
).filter(lambda text: text.strip())
long_runs = st.builds(lambda c, n, tail: c * n + tail, st.sampled_from("=éa🙏 .-"), st.integers(990, 6_000), typed_text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(typed_text, long_runs))
def test_property_any_text_crosses_the_relay_as_typed(smtp_server, text):
    """The encoding layer alone, against the relay (the server is reused across examples)."""
    smtp_server.clear()
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        client.sendmail("a@example.fr", ["b@example.fr"], wire_bytes(text, html.escape(text)))
    [received] = smtp_server.messages
    assert _text_part(received) == _typed(text)
    assert html.unescape(_html_part(received)) == _typed(text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(description=typed_text, comment=st.one_of(typed_text, long_runs))
def test_property_descriptions_and_comments_through_the_outbox(text_app, smtp_server, description, comment):
    """The whole path: rendered by the templates, stored, delivered in one batch over one connection."""
    smtp_server.clear()
    with text_app.app_context():
        ids = [
            queue_email(f"prop:{kind}", to="expert@cci.example", template="test_text", context={"text": text}).id
            for kind, text in (("description", description), ("comment", comment))
        ]
        _db.session.commit()
        states = {e.key: e.state for e in _db.session.scalars(select(OutboundEmail).where(OutboundEmail.id.in_(ids)))}
        _db.session.query(OutboundEmail).delete()
        _db.session.commit()
    assert states == {"prop:description": "sent", "prop:comment": "sent"}
    received = [_text_part(message) for message in smtp_server.messages]
    assert received == [_typed(text).strip() + "\n" for text in (description, comment)]


def test_inline_delivery_after_commit_uses_the_batch_path(text_app, smtp_server):
    """Without Redis, the rows of one commit leave together over one SMTP session."""
    with text_app.app_context():
        for n in range(3):
            queue_email(f"inline:{n}", to=f"e{n}@cci.example", template="test_text", context={"text": str(n)})
        _db.session.commit()
        assert deliver_emails([]) == {}
    assert [re.sub(r"\s", "", _text_part(m)) for m in smtp_server.messages] == ["0", "1", "2"]
    assert smtp_server.sessions == 1
