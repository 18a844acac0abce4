"""The outbox (contract §6, decision 2): emails are rows written in the same transaction as
their cause, under a unique key per event, and delivered afterwards by a job.

``queue_email`` only adds the row to the caller's session; once that transaction commits, the
rows it added are handed to the delivery job (``app/jobs``). If Redis is down at that moment
nothing is lost: the row stays ``queued`` and the periodic sweep hands it over again.

Delivery (``deliver_email``) is idempotent on the row's state, so a job run twice sends once.
Retries are driven by the row, not by RQ: a failed attempt stores ``next_attempt_at`` (backoff)
and the periodic sweep re-enqueues the rows that are due. One mechanism, the same with Redis and
inline (without Redis, ``flask outbox sweep`` runs the sweep by hand).

Without ``MAIL_SERVER`` (the embedded default) an email is logged instead of sent and its row is
marked ``sent`` with the note ``LOGGED_ONLY`` in ``last_error``: left ``queued`` it would be swept
forever, and the note keeps the back office honest about what happened to it.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from typing import Any

from flask import current_app, render_template
from flask_mail import Message as _FlaskMailMessage
from sqlalchemy import and_, event, func, or_, select
from sqlalchemy.orm import Session

from app.extensions import db, mail
from app.models import OutboundEmail
from app.models.base import utcnow
from app.services.errors import ServiceError

log = logging.getLogger(__name__)

# Lines may be as long as RFC 5322 allows, so headers are never folded: Python 3.11's folding
# of a pre-encoded non-ASCII subject splits words (« salar iés ») or doubles spaces.
_SMTP_POLICY = email_policy.SMTP.clone(max_line_length=998)


class Message(_FlaskMailMessage):
    """Flask-Mail's message with the subject encoded once, by the SMTP policy, unfolded."""

    def _message(self):
        msg = super()._message()
        msg.policy = _SMTP_POLICY
        del msg["Subject"]
        msg["Subject"] = self.subject
        return msg


_PENDING = "outbox_pending_ids"

LOGGED_ONLY = "Journalisé, non envoyé : MAIL_SERVER n'est pas configuré."
DEFAULT_MAX_ATTEMPTS = 8
# Seconds to wait after the 1st, 2nd… failed attempt; the last value repeats. With 8 attempts the
# last one happens about a day after the first: long enough to outlast an SMTP relay outage.
DEFAULT_RETRY_DELAYS = (60, 300, 1800, 7200, 21600)
# A row queued without a date is normally handed over at commit time; older than this, the
# hand-over was lost (Redis down) and the sweep takes it.
DEFAULT_SWEEP_GRACE_SECONDS = 60
RESEND_MARK = ":renvoi:"


def message_id_for(key: str) -> str:
    """A stable Message-ID for an event key: a duplicate delivery is recognisable as such."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = current_app.config["BASE_URL"].split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "localhost"
    return f"<{digest}@{domain}>"


def render_email(template: str, **context: Any) -> tuple[str, str, str]:
    """Subject, text body and HTML body of ``emails/<template>.{subject.txt,txt,html}``."""
    context.setdefault("base_url", current_app.config["BASE_URL"])
    subject = " ".join(render_template(f"emails/{template}.subject.txt", **context).split())
    text = render_template(f"emails/{template}.txt", **context).strip() + "\n"
    html = render_template(f"emails/{template}.html", **context)
    return subject, text, html


def queue_email(
    key: str, *, to: str, template: str, context: dict[str, Any] | None = None, reply_to: str | None = None
) -> OutboundEmail:
    """Write the email of event ``key`` into the current transaction (once per key).

    Does not commit: the caller's commit makes the email exist together with its cause.
    """
    existing = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key))
    if existing is not None:
        return existing
    subject, text, html = render_email(template, **(context or {}))
    email = OutboundEmail(
        key=key, recipient=to, reply_to=reply_to, subject=subject, body_text=text, body_html=html, state="queued"
    )
    db.session.add(email)
    db.session.flush()
    _enqueue_after_commit(db.session, email)
    return email


def _enqueue_after_commit(session: Session, email: OutboundEmail) -> None:
    """Hand ``email`` to the delivery job once ``session`` commits (never before: the worker
    must find the row, and a rollback must send nothing)."""
    session.info.setdefault(_PENDING, []).append(email.id)


# ---------------------------------------------------------------- delivery


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the ``attempts``-th failed attempt (``MAIL_RETRY_DELAYS``, seconds)."""
    delays = tuple(current_app.config.get("MAIL_RETRY_DELAYS") or DEFAULT_RETRY_DELAYS)
    return timedelta(seconds=delays[min(max(attempts, 1), len(delays)) - 1])


def _describe_failure(error: Exception) -> tuple[str, bool]:
    """A French explanation of a failed attempt for staff, and whether it is worth retrying.

    Only the recipient's or the message's definitive refusal (5xx) is final; a 4xx, an
    unreachable server or our own misconfiguration (authentication, sender) may heal.
    """
    # A server that answers 421 hangs up; Flask-Mail's QUIT then fails and hides the answer.
    if isinstance(error, smtplib.SMTPServerDisconnected) and isinstance(error.__context__, smtplib.SMTPException):
        error = error.__context__
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in error.recipients.values()]
        detail = "; ".join(
            f"{address} : {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for address, (code, msg) in error.recipients.items()
        )
        return f"Destinataire refusé par le serveur SMTP ({detail})", not all(code >= 500 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        permanent = isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500
        return f"Refus du serveur SMTP ({error.smtp_code} {text})", not permanent
    if isinstance(error, smtplib.SMTPException):
        return f"Erreur SMTP : {error}", True
    if isinstance(error, OSError):
        return f"Serveur SMTP injoignable : {error}", True
    return f"Erreur inattendue à l'envoi : {type(error).__name__} : {error}", True


def _message_for(email: OutboundEmail) -> Message:
    message = Message(
        subject=email.subject,
        recipients=[email.recipient],
        body=email.body_text,
        html=email.body_html,
        reply_to=email.reply_to,
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
    )
    # Flask-Mail writes ``msgId`` as the Message-ID header; an ``extra_headers`` entry would add
    # a second Message-ID header instead of replacing it.
    message.msgId = message_id_for(email.key)
    return message


def _claim(session: Session, email_id: int) -> OutboundEmail | None:
    """Lock the row for this delivery; None when another worker holds it right now.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` keeps the lock until the outcome is committed, so two
    workers never send the same row at once. SQLite (the single-process embedded default) has
    no row locks; a plain read is enough there.
    """
    query = select(OutboundEmail).where(OutboundEmail.id == email_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalar(query)


def deliver_email(email_id: int) -> str:
    """Send outbox row ``email_id`` if it is still due, and return its resulting state.

    Runs on its own session: when jobs run inline the delivery happens inside the cause's
    ``after_commit`` hook, where ``db.session`` may not emit SQL. Safe to run twice: a row
    that is ``sent`` or ``failed``, locked by another worker, or waiting for its backoff is
    left alone.
    """
    with Session(db.engine, expire_on_commit=False) as session:
        email = _claim(session, email_id)
        if email is None:
            state = session.scalar(select(OutboundEmail.state).where(OutboundEmail.id == email_id))
            if state is None:
                log.warning("courriel %s introuvable dans la boîte d'envoi", email_id)
                return "missing"
            return state
        if email.state != "queued":
            return email.state
        now = utcnow()
        if email.next_attempt_at is not None and _aware(email.next_attempt_at) > now:
            return email.state

        if not current_app.config.get("MAIL_SERVER"):
            log.info(
                "MAIL_SERVER absent : courriel journalisé, non envoyé. À : %s — Objet : %s\n%s",
                email.recipient,
                email.subject,
                email.body_text,
            )
            email.state, email.sent_at, email.last_error, email.next_attempt_at = "sent", now, LOGGED_ONLY, None
            session.commit()
            return email.state

        email.attempts += 1
        try:
            mail.send(_message_for(email))
        except Exception as error:
            if not isinstance(error, (smtplib.SMTPException, OSError)):
                log.exception("courriel %s : erreur inattendue à l'envoi", email.id)
            reason, retryable = _describe_failure(error)
            email.last_error = reason
            max_attempts = int(current_app.config.get("MAIL_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
            if retryable and email.attempts < max_attempts:
                email.next_attempt_at = now + retry_delay(email.attempts)
                log.warning(
                    "courriel %s : tentative %s échouée (%s), nouvel essai prévu", email.id, email.attempts, reason
                )
            else:
                email.state, email.next_attempt_at = "failed", None
                log.error("courriel %s : échec définitif après %s tentative(s) (%s)", email.id, email.attempts, reason)
        else:
            email.state, email.sent_at, email.last_error, email.next_attempt_at = "sent", now, None, None
        session.commit()
        return email.state


def due_email_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Rows to hand over again: due after a backoff, or queued long ago and never handed over."""
    now = now or utcnow()
    grace = timedelta(seconds=current_app.config.get("OUTBOX_SWEEP_GRACE_SECONDS", DEFAULT_SWEEP_GRACE_SECONDS))
    query = (
        select(OutboundEmail.id)
        .where(
            OutboundEmail.state == "queued",
            or_(
                OutboundEmail.next_attempt_at <= now,
                and_(OutboundEmail.next_attempt_at.is_(None), OutboundEmail.created_at <= now - grace),
            ),
        )
        .order_by(OutboundEmail.id)
        .limit(limit)
    )
    # Its own short session: the sweep may run inline deliveries right after, on other connections.
    with Session(db.engine) as session:
        return list(session.scalars(query))


def sweep_outbox(*, now: datetime | None = None) -> list[int]:
    """Re-enqueue the due rows (decision 2); a row whose job is still waiting is not doubled."""
    from app.jobs import enqueue_deliveries

    ids = due_email_ids(now=now)
    if ids:
        log.info("balayage de la boîte d'envoi : %s courriel(s) remis en file", len(ids))
        enqueue_deliveries(ids)
    return ids


def resend_email(email: OutboundEmail) -> OutboundEmail:
    """Staff's « Renvoyer », and commit; returns the row that will be delivered.

    - ``failed``: the same row goes back to ``queued`` with its attempts reset (it never
      reached anyone, so its Message-ID may stay).
    - ``queued``: its backoff is dropped, it is delivered now.
    - ``sent``: a new row ``<key>:renvoi:<n>`` with the same content, so the copy has its own
      Message-ID (a mail client would hide a second message with the same one) and the
      history of the first delivery stays as it was.
    """
    if email.state == "sent":
        base = email.key.split(RESEND_MARK, 1)[0]
        count = db.session.scalar(
            select(func.count()).select_from(OutboundEmail).where(OutboundEmail.key.like(f"{base}{RESEND_MARK}%"))
        )
        copy = OutboundEmail(
            key=f"{base}{RESEND_MARK}{count + 1}",
            recipient=email.recipient,
            reply_to=email.reply_to,
            subject=email.subject,
            body_text=email.body_text,
            body_html=email.body_html,
            state="queued",
        )
        if len(copy.key) > OutboundEmail.key.type.length:
            raise ServiceError("Ce courriel a été renvoyé trop de fois.")
        db.session.add(copy)
        db.session.flush()
        target = copy
    elif email.state in ("failed", "queued"):
        if email.state == "failed":
            email.attempts = 0
        email.state, email.last_error, email.next_attempt_at = "queued", None, None
        target = email
    else:  # pragma: no cover - the CHECK constraint allows no other state
        raise ServiceError(f"État inconnu : {email.state}")
    _enqueue_after_commit(db.session, target)
    db.session.commit()
    return target


# ---------------------------------------------------------------- hand-over after commit


def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING, None)
    if ids:
        from app.jobs import enqueue_deliveries

        enqueue_deliveries(ids)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def init_app(app) -> None:
    session_cls = db.session.session_factory.class_
    if not event.contains(session_cls, "after_commit", _after_commit):
        event.listen(session_cls, "after_commit", _after_commit)
        event.listen(session_cls, "after_soft_rollback", lambda session, _tx: _after_rollback(session))
