"""Delivering the outbox: a batch of rows over one SMTP connection, each outcome written as
soon as its message is accepted, each failure with its cause.

A run first claims its rows in one statement (``UPDATE … RETURNING``: the rows still due, not
claimed by a live run, and on PostgreSQL not locked right now, ``SKIP LOCKED``), so that two
workers never send the same row and neither waits for the other. It then sends them one by one
and writes each outcome at once, in its own autocommitted statement, releasing that row's claim:
a crash loses nothing that was written and re-sends at most the message that was on the wire
(with the same Message-ID). A worker killed mid-batch leaves claims that lapse after
``OUTBOX_CLAIM_SECONDS``; the sweep (``outbox.sweep_outbox``) then finds those rows due again.

Without ``MAIL_SERVER`` (the embedded default) an email is logged instead of sent and its row is
marked ``sent`` with the note ``LOGGED_ONLY`` in ``last_error``: left ``queued`` it would be swept
forever, and the note keeps the back office honest about what happened to it.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_mail import Connection as _FlaskMailConnection
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import OutboundEmail
from app.models.base import utcnow
from app.models.outbox import EmailState, FailureCause
from app.services.messaging.email_wire import ascii_address, build_message
from app.services.messaging.outbox import (
    LOGGED_ONLY,
    batch_size,
    claim_duration,
    due_clause,
    due_email_ids,
    message_id_for,
    unclaimed,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
# Seconds to wait after the 1st, 2nd… failed attempt; the last value repeats. With 8 attempts the
# last one happens about a day after the first: long enough to outlast an SMTP relay outage.
DEFAULT_RETRY_DELAYS = (60, 300, 1800, 7200, 21600)
DEFAULT_SMTP_TIMEOUT = 30


class _Connection(_FlaskMailConnection):
    """Flask-Mail's SMTP connection with a timeout: a relay that stops answering must fail the
    attempt (and be retried later), not hold the worker for ever."""

    def configure_host(self):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(current_app.config.get("MAIL_TIMEOUT_SECONDS") or DEFAULT_SMTP_TIMEOUT)
        try:
            return super().configure_host()
        finally:
            socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------- why an attempt failed


@dataclass(frozen=True)
class Failure:
    """A failed attempt as staff read it: what happened, whether to try again, whose fault."""

    reason: str
    retryable: bool
    cause: FailureCause


# What SMTP servers answer when the message itself breaks a limit: a line over 998 characters
# (« 500 Line too long »), a size (« 552 Too much mail data », « 5.3.4 Message too big »), its
# content or encoding (« 5.6.x »). No retry can heal these: the service must change.
_MESSAGE_DEFECT = re.compile(
    r"line too long|too long|too (?:much|big|large)|size|exceed|\b5\.3\.4\b|\b5\.6\.\d+\b", re.IGNORECASE
)


def _smtp_text(error: smtplib.SMTPResponseException) -> str:
    return error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)


def describe_failure(error: Exception) -> Failure:
    """A French explanation of a failed attempt, whether it is worth retrying, and its cause.

    Only a definitive refusal (5xx) is final; a 4xx, an unreachable server or our own
    misconfiguration (authentication, sender) may heal. A refusal of the message itself
    (``FailureCause.MESSAGE``) is told apart from a refusal of the recipient.
    """
    # A server that answers 421 hangs up; the QUIT then fails and hides the answer.
    if isinstance(error, smtplib.SMTPServerDisconnected) and isinstance(error.__context__, smtplib.SMTPException):
        error = error.__context__
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in error.recipients.values()]
        detail = "; ".join(
            f"{address} : {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for address, (code, msg) in error.recipients.items()
        )
        return Failure(
            f"Destinataire refusé par le serveur SMTP ({detail})",
            not all(code >= 500 for code in codes),
            FailureCause.RECIPIENT,
        )
    if isinstance(error, smtplib.SMTPResponseException):
        text = _smtp_text(error)
        answer = f"{error.smtp_code} {text}"
        permanent = error.smtp_code >= 500
        defect = permanent and (
            error.smtp_code == 552 or (isinstance(error, smtplib.SMTPDataError) and bool(_MESSAGE_DEFECT.search(text)))
        )
        if defect:
            return Failure(
                f"Message refusé par le serveur SMTP, défaut du service ({answer})", False, FailureCause.MESSAGE
            )
        if isinstance(error, smtplib.SMTPDataError):
            cause = FailureCause.RECIPIENT if permanent else FailureCause.RELAY
            return Failure(f"Refus du serveur SMTP ({answer})", not permanent, cause)
        return Failure(f"Refus du serveur SMTP ({answer})", True, FailureCause.RELAY)
    if isinstance(error, smtplib.SMTPException):
        return Failure(f"Erreur SMTP : {error}", True, FailureCause.RELAY)
    if isinstance(error, OSError):
        return Failure(f"Serveur SMTP injoignable : {error}", True, FailureCause.RELAY)
    return Failure(f"Erreur inattendue à l'envoi : {type(error).__name__} : {error}", True, FailureCause.INTERNAL)


# ---------------------------------------------------------------- delivery


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the ``attempts``-th failed attempt (``MAIL_RETRY_DELAYS``, seconds)."""
    delays = tuple(current_app.config.get("MAIL_RETRY_DELAYS") or DEFAULT_RETRY_DELAYS)
    return timedelta(seconds=delays[min(max(attempts, 1), len(delays)) - 1])


def _wire_bytes(email, sender: str) -> bytes:
    # The Message-ID derives from the event key: a duplicate delivery is recognisable as such.
    return build_message(
        sender=sender,
        recipient=email.recipient,
        subject=email.subject,
        body_text=email.body_text,
        body_html=email.body_html,
        reply_to=email.reply_to,
        message_id=message_id_for(email.key),
    )


# What a delivery reads of a row (never the ORM object: a batch of thousands needs neither its
# identity map nor its flush).
_DELIVERY_COLUMNS = (
    OutboundEmail.id,
    OutboundEmail.key,
    OutboundEmail.recipient,
    OutboundEmail.reply_to,
    OutboundEmail.subject,
    OutboundEmail.body_text,
    OutboundEmail.body_html,
    OutboundEmail.attempts,
)
# A run stops sending this long before its claims lapse (a connection timeout and then some; a
# third of the claim when it is shorter), so that it never sends a row another run may have
# claimed meanwhile.
CLAIM_MARGIN = timedelta(seconds=45)


# One statement for every outcome, built once: the row's new state, and its claim released.
_WRITE_OUTCOME = (
    update(OutboundEmail)
    .where(OutboundEmail.id == bindparam("email_id"), OutboundEmail.claimed_by == bindparam("token"))
    .values(
        state=bindparam("state"),
        attempts=bindparam("attempts"),
        sent_at=bindparam("sent_at"),
        last_error=bindparam("last_error"),
        failure_cause=bindparam("failure_cause"),
        next_attempt_at=bindparam("next_attempt_at"),
        claimed_by=None,
        claimed_until=None,
    )
)


class _Courier:
    """One delivery run: one database connection and one SMTP connection for all its rows.

    The run first claims its rows in one statement (``UPDATE … RETURNING``: the rows still due,
    not claimed by a live run, and on PostgreSQL not locked right now, ``SKIP LOCKED``), so that
    two workers never send the same row and neither waits for the other. It then sends them one
    by one and writes each outcome at once, in its own autocommitted statement, releasing that
    row's claim: a crash loses nothing that was written, and re-sends at most the message that
    was on the wire. A worker killed mid-batch leaves claims that lapse after
    ``OUTBOX_CLAIM_SECONDS``; the sweep then finds those rows due again.

    The SMTP connection is opened at the first message and dropped after any failure (the next
    message opens a fresh one): a relay that hung up or answered 421 must not fail the messages
    after it.
    """

    def __init__(self) -> None:
        self.db = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.locking = db.engine.dialect.name == "postgresql"
        self.token = uuid.uuid4().hex
        self.sender = current_app.config["MAIL_DEFAULT_SENDER"]
        self.deadline = 0.0
        self.unsent: set[int] = set()  # claimed, not yet delivered
        self.connection: _Connection | None = None
        self.outcomes: Counter[str] = Counter()
        # Set when the SMTP connection could not be opened: the rest of the run waits.
        self.relay_down = False

    def __enter__(self) -> _Courier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._drop(quit_politely=True)
        try:
            self.release()
        finally:
            self.db.close()

    def claim(self, email_ids: Sequence[int]) -> list:
        """Claim those of ``email_ids`` that are due and free; their rows, in the given order."""
        if not email_ids:
            return []
        now, started = utcnow(), time.monotonic()
        pick = select(OutboundEmail.id).where(OutboundEmail.id.in_(email_ids), due_clause(now), unclaimed(now))
        if self.locking:
            pick = pick.with_for_update(skip_locked=True)
        rows = self.db.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id.in_(pick.scalar_subquery()))
            .values(claimed_by=self.token, claimed_until=now + claim_duration())
            .returning(*_DELIVERY_COLUMNS)
        ).all()
        # Measured from before the statement: the claims lapse no sooner than this.
        duration = claim_duration()
        self.deadline = started + (duration - min(CLAIM_MARGIN, duration / 3)).total_seconds()
        self.unsent.update(row.id for row in rows)
        position = {email_id: index for index, email_id in enumerate(email_ids)}
        return sorted(rows, key=lambda row: position[row.id])

    def release(self) -> None:
        """Give back the claims of the rows this run did not get to."""
        if self.unsent:
            self.db.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id.in_(self.unsent), OutboundEmail.claimed_by == self.token)
                .values(claimed_by=None, claimed_until=None)
            )
            self.unsent.clear()

    def _drop(self, *, quit_politely: bool = False) -> None:
        connection, self.connection = self.connection, None
        if connection is None or connection.host is None:
            return
        try:
            if quit_politely:
                connection.host.quit()
            else:
                connection.host.close()
        except (smtplib.SMTPException, OSError):
            connection.host.close()

    def _send(self, email) -> None:
        data = _wire_bytes(email, self.sender)  # before connecting: a message that cannot be built is the row's fault
        if self.connection is None:
            connection = _Connection(current_app.extensions["mail"])
            try:
                connection.__enter__()
            except BaseException:
                self.relay_down = True
                raise
            self.connection = connection
        if self.connection.host is None:  # MAIL_SUPPRESS_SEND: Flask-Mail's switch for tests
            return
        try:
            self.connection.host.sendmail(ascii_address(self.sender), [ascii_address(email.recipient)], data)
        except BaseException:
            self._drop()
            raise

    @property
    def claims_valid(self) -> bool:
        return time.monotonic() < self.deadline

    def deliver(self, email) -> str:
        """Send one claimed row and write its outcome; its resulting state."""
        now = utcnow()
        if not current_app.config.get("MAIL_SERVER"):
            log.info(
                "MAIL_SERVER absent : courriel journalisé, non envoyé. À : %s — Objet : %s\n%s",
                email.recipient,
                email.subject,
                email.body_text,
            )
            outcome = {"state": EmailState.SENT, "sent_at": now, "last_error": LOGGED_ONLY, "attempts": email.attempts}
        else:
            try:
                self._send(email)
            except Exception as error:  # noqa: BLE001 - any failure is the row's, recorded on it; the batch goes on
                outcome = _failure_outcome(email, email.attempts + 1, error, now)
            else:
                outcome = {"state": EmailState.SENT, "sent_at": now, "last_error": None, "attempts": email.attempts + 1}
        outcome = {"next_attempt_at": None, "failure_cause": None, "sent_at": None, **outcome}
        written = self.db.execute(_WRITE_OUTCOME, {**outcome, "email_id": email.id, "token": self.token})
        self.unsent.discard(email.id)
        if written.rowcount != 1:  # pragma: no cover - the run stops before its claims lapse
            log.error("courriel %s : réclamé par un autre envoi pendant le sien, état non enregistré", email.id)
        self.outcomes[outcome["state"]] += 1
        return outcome["state"]


def _failure_outcome(email, attempts: int, error: BaseException, now: datetime) -> dict[str, Any]:
    """The row's new values after a failed attempt: retried after its backoff, or failed."""
    failure = describe_failure(error)
    if failure.cause is FailureCause.INTERNAL:
        log.error("courriel %s : erreur inattendue à l'envoi", email.id, exc_info=error)
    outcome = {"attempts": attempts, "last_error": failure.reason, "failure_cause": failure.cause.value}
    max_attempts = int(current_app.config.get("MAIL_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    if failure.retryable and attempts < max_attempts:
        log.warning("courriel %s : tentative %s échouée (%s), nouvel essai prévu", email.id, attempts, failure.reason)
        return {**outcome, "state": EmailState.QUEUED, "next_attempt_at": now + retry_delay(attempts)}
    if failure.cause is FailureCause.MESSAGE:
        log.error(
            "courriel %s refusé pour un défaut du message lui-même, à corriger dans le service puis à renvoyer (%s)",
            email.id,
            failure.reason,
        )
    else:
        log.error("courriel %s : échec définitif après %s tentative(s) (%s)", email.id, attempts, failure.reason)
    return {**outcome, "state": EmailState.FAILED}


def deliver_emails(email_ids: Iterable[int]) -> dict[str, int]:
    """Send the outbox rows ``email_ids`` that are still due, over one SMTP connection.

    Returns how many rows ended in each state (``sent``, ``queued`` for a retry, ``failed``),
    were left alone (``skipped``: already sent or failed, claimed by another run, waiting for
    their backoff, or gone) or wait for a later run (``postponed``). Safe to run twice and
    beside another worker. When the SMTP connection cannot be opened, the rows after the one
    that found out wait for a later run instead of each spending an attempt (and a connection
    timeout) on a relay that is down.
    """
    ids = list(email_ids)
    with _Courier() as courier:
        rows = courier.claim(ids)
        if len(rows) < len(ids):
            courier.outcomes["skipped"] += len(ids) - len(rows)
        for position, email in enumerate(rows):
            if not courier.claims_valid:
                courier.outcomes["postponed"] += len(rows) - position
                log.warning(
                    "lot d'envoi trop lent : %s courriel(s) attendent le prochain passage", len(rows) - position
                )
                break
            courier.deliver(email)
            if courier.relay_down:
                left = len(rows) - position - 1
                if left:
                    courier.outcomes["postponed"] += left
                    log.warning("serveur SMTP injoignable : %s courriel(s) du lot attendent le prochain passage", left)
                break
        return dict(courier.outcomes)


def deliver_email(email_id: int) -> str:
    """Send one outbox row if it is still due, and return its resulting state (``missing`` when
    there is no such row)."""
    deliver_emails([email_id])
    with Session(db.engine) as session:
        state = session.scalar(select(OutboundEmail.state).where(OutboundEmail.id == email_id))
    if state is None:
        log.warning("courriel %s introuvable dans la boîte d'envoi", email_id)
    return state or "missing"


def deliver_due_emails(*, now: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """One batch of whatever is due, oldest first: what the sweep's jobs run.

    Two runs started together pick the same candidates and one claims them; the other then
    takes the next ones, a few times at most.
    """
    outcomes: Counter[str] = Counter()
    for _ in range(3):
        candidates = due_email_ids(now=now, limit=limit or batch_size(), grace=False)
        if not candidates:
            break
        result = deliver_emails(candidates)
        skipped = result.pop("skipped", 0)
        outcomes.update(result)
        if skipped < len(candidates):
            break
    return dict(outcomes)
