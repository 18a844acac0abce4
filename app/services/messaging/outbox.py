"""The outbox: emails are rows written in the same transaction as their cause, under a unique
key per event, and delivered afterwards by a job.

``queue_email`` only adds the row to the caller's session; once that transaction commits, the
rows it added are handed to the delivery jobs in bounded batches (``request_deliveries``). If
Redis is down at that moment nothing is lost: the row stays ``queued`` and the periodic sweep
takes it.

The row, never a job, decides what is due: the sweep that ``flask rq cron`` runs every minute
counts the rows that are due (after a backoff, or never handed over) and asks for enough
batches of « whatever is due » (``delivery.deliver_due_emails``), so a job lost, stranded or
duplicated in Redis cannot keep a row from leaving. Delivering is ``delivery``'s work. One
mechanism, the same with Redis and inline (without Redis, ``flask outbox sweep`` runs the sweep
by hand).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, render_template
from redis.exceptions import RedisError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import OutboundEmail
from app.models.base import utcnow
from app.models.outbox import EmailState, FailureCause
from app.services import queueing
from app.services.errors import ServiceError
from app.services.transactions import collected

log = logging.getLogger(__name__)


_PENDING = "outbox_pending_ids"

LOGGED_ONLY = "Journalisé, non envoyé : MAIL_SERVER n'est pas configuré."
# A row queued without a date is normally handed over at commit time; older than this, the
# hand-over was lost (Redis down) and the sweep takes it.
DEFAULT_SWEEP_GRACE_SECONDS = 60
# Rows per delivery job: one SMTP connection and about a second of work. Small enough for two
# workers to share a burst, large enough that the job's own cost disappears.
DEFAULT_BATCH_SIZE = 200
# The sweep asks for at most this many batches per run (it runs every minute).
SWEEP_MAX_BATCHES = 500
# How long a delivery run's claim on its rows lasts (a batch takes about a second).
DEFAULT_CLAIM_SECONDS = 300
RESEND_MARK = ":renvoi:"
SUBJECT_MAX = OutboundEmail.subject.type.length


def batch_size() -> int:
    return int(current_app.config.get("OUTBOX_BATCH_SIZE") or DEFAULT_BATCH_SIZE)


def batches(ids: Sequence[int], size: int | None = None) -> list[list[int]]:
    """``ids`` cut into delivery batches of at most ``size`` (``OUTBOX_BATCH_SIZE``)."""
    size = size or batch_size()
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


def message_id_for(key: str) -> str:
    """A stable Message-ID for an event key: a duplicate delivery is recognisable as such."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = current_app.config["BASE_URL"].split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "localhost"
    return f"<{digest}@{domain}>"


def render_email(template: str, **context: Any) -> tuple[str, str, str]:
    """Subject, text body and HTML body of ``emails/<template>.{subject.txt,txt,html}``.

    The subject is one line, cut to what the outbox stores (a subject quoting a long typed name
    must not make the cause's transaction fail).
    """
    context.setdefault("base_url", current_app.config["BASE_URL"])
    subject = " ".join(render_template(f"emails/{template}.subject.txt", **context).split())
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1].rstrip() + "…"
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
    # The last defence of the outbox: a NUL cannot be stored (nor sent), whatever the context
    # quoted; a message that could not be written would block its whole batch at every run.
    subject, text = subject.replace("\x00", ""), text.replace("\x00", "")
    html = html.replace("\x00", "") if html is not None else None
    email = OutboundEmail(
        key=key,
        recipient=to,
        reply_to=reply_to,
        subject=subject,
        body_text=text,
        body_html=html,
        state=EmailState.QUEUED,
    )
    db.session.add(email)
    db.session.flush()
    _enqueue_after_commit(db.session, email.id)
    return email


def _enqueue_after_commit(session: Session, *email_ids: int) -> None:
    """Hand the rows to the delivery jobs once ``session`` commits (never before: the worker
    must find the rows, and a rollback must send nothing)."""
    collected(_PENDING, request_deliveries, session=session).extend(email_ids)


def claim_duration() -> timedelta:
    return timedelta(seconds=int(current_app.config.get("OUTBOX_CLAIM_SECONDS") or DEFAULT_CLAIM_SECONDS))


def unclaimed(now: datetime):
    """Rows no live delivery run holds (never claimed, or their claim lapsed)."""
    return or_(OutboundEmail.claimed_until.is_(None), OutboundEmail.claimed_until < now)


def due_clause(now: datetime, *, grace: timedelta | None = None):
    """Queued rows whose retry is due, or never attempted (and, with ``grace``, older than it)."""
    fresh = OutboundEmail.next_attempt_at.is_(None)
    if grace is not None:
        fresh = and_(fresh, OutboundEmail.created_at <= now - grace)
    return and_(OutboundEmail.state == EmailState.QUEUED, or_(OutboundEmail.next_attempt_at <= now, fresh))


def due_email_ids(*, now: datetime | None = None, limit: int = 500, grace: bool = True) -> list[int]:
    """Rows to deliver now: due after a backoff first, then never attempted, oldest first; none
    that a live delivery run has claimed.

    With ``grace`` (the sweep's view) a row queued moments ago is left to the hand-over of its
    own commit. Two index range scans, never a sort of the whole backlog.
    """
    now = now or utcnow()
    wait = timedelta(seconds=current_app.config.get("OUTBOX_SWEEP_GRACE_SECONDS", DEFAULT_SWEEP_GRACE_SECONDS))
    retries = (
        select(OutboundEmail.id)
        .where(OutboundEmail.state == EmailState.QUEUED, OutboundEmail.next_attempt_at <= now, unclaimed(now))
        .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
        .limit(limit)
    )
    fresh = select(OutboundEmail.id).where(
        OutboundEmail.state == EmailState.QUEUED, OutboundEmail.next_attempt_at.is_(None), unclaimed(now)
    )
    if grace:
        fresh = fresh.where(OutboundEmail.created_at <= now - wait)
    # Its own short session: deliveries run right after, on other connections.
    with Session(db.engine) as session:
        ids = list(session.scalars(retries))
        if len(ids) < limit:
            ids += session.scalars(fresh.order_by(OutboundEmail.id).limit(limit - len(ids)))
        return ids


def count_overdue(*, now: datetime | None = None, cap: int | None = None) -> int:
    """How many rows the sweep must take (due, past the hand-over's grace), counted up to ``cap``
    only: a backlog of 100,000 rows is never read to be counted."""
    now = now or utcnow()
    cap = cap or batch_size() * SWEEP_MAX_BATCHES
    grace = timedelta(seconds=current_app.config.get("OUTBOX_SWEEP_GRACE_SECONDS", DEFAULT_SWEEP_GRACE_SECONDS))
    overdue = select(OutboundEmail.id).where(due_clause(now, grace=grace), unclaimed(now)).limit(cap).subquery()
    with Session(db.engine) as session:
        return session.scalar(select(func.count()).select_from(overdue)) or 0


def sweep_outbox(*, now: datetime | None = None) -> int:
    """Ask for enough delivery batches to take every overdue row; returns how many are overdue.

    The rows are not handed over by id: each batch takes whatever is due when it runs, so a job
    that was lost, stranded or duplicated in Redis cannot keep a row from leaving.
    """
    overdue = count_overdue(now=now)
    if overdue:
        log.info("balayage de la boîte d'envoi : %s courriel(s) à envoyer", overdue)
        request_due_deliveries(math.ceil(overdue / batch_size()))
    return overdue


def resend_email(email: OutboundEmail) -> OutboundEmail:
    """Staff's « Renvoyer »; returns the row that will be delivered once the caller commits.

    - ``failed``: the same row goes back to ``queued`` with its attempts reset (it never
      reached anyone, so its Message-ID may stay).
    - ``queued``: its backoff is dropped, it is delivered now.
    - ``sent``: a new row ``<key>:renvoi:<n>`` with the same content, so the copy has its own
      Message-ID (a mail client would hide a second message with the same one) and the
      history of the first delivery stays as it was.
    """
    if email.state == EmailState.SENT:
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
            state=EmailState.QUEUED,
        )
        if len(copy.key) > OutboundEmail.key.type.length:
            raise ServiceError("Ce courriel a été renvoyé trop de fois.")
        db.session.add(copy)
        db.session.flush()
        target = copy
    elif email.state in (EmailState.FAILED, EmailState.QUEUED):
        if email.state == EmailState.FAILED:
            email.attempts = 0
        email.state, email.last_error, email.next_attempt_at, email.failure_cause = EmailState.QUEUED, None, None, None
        target = email
    else:  # pragma: no cover - the CHECK constraint allows no other state
        raise ServiceError(f"État inconnu : {email.state}")
    _enqueue_after_commit(db.session, target.id)
    db.session.flush()
    return target


def resend_failed(*, cause: FailureCause | None = None, dry_run: bool = False) -> int:
    """Every ``failed`` row (of ``cause`` only, when given) back to ``queued``, attempts reset,
    in one statement; the caller commits and the rows are then handed over. Returns the count.

    For operators after a fix: the rows refused for a defect of the message are re-sent by
    ``flask outbox resend --cause message`` once the service that wrote them is corrected.
    """
    condition = [OutboundEmail.state == EmailState.FAILED]
    if cause is not None:
        condition.append(OutboundEmail.failure_cause == cause.value)
    if dry_run:
        return db.session.scalar(select(func.count()).select_from(OutboundEmail).where(*condition)) or 0
    ids = list(
        db.session.scalars(
            update(OutboundEmail)
            .where(*condition)
            .values(state=EmailState.QUEUED, attempts=0, last_error=None, next_attempt_at=None, failure_cause=None)
            .returning(OutboundEmail.id)
            .execution_options(synchronize_session=False)
        )
    )
    _enqueue_after_commit(db.session, *ids)
    return len(ids)


# ---------------------------------------------------------------- hand-over to the jobs


def request_deliveries(email_ids: Sequence[int]) -> None:
    """Hand committed rows to the delivery jobs, in batches of ``OUTBOX_BATCH_SIZE`` and one
    Redis round trip: a digest to 10,000 experts is 50 jobs, not 10,000 calls inside the web
    request. If Redis is unreachable the rows stay queued and the periodic sweep takes them.

    Called after the cause's commit: an error here must not turn a stored request into an
    error page, so Redis failures are logged, not raised.
    """
    try:
        queueing.enqueue_many(queueing.DELIVER_EMAILS, [(batch,) for batch in batches(email_ids)], result_ttl=0)
    except RedisError as error:
        log.warning(
            "Redis injoignable (%s) : %s courriel(s) restent en attente dans la boîte d'envoi, "
            "le balayage périodique les reprendra.",
            error,
            len(email_ids),
        )


def request_due_deliveries(count: int) -> int:
    """Ask for ``count`` batches of whatever is due, minus the jobs already waiting in the
    emails queue (each of them takes due rows too); returns how many were asked for."""
    try:
        missing = count - queueing.waiting(queueing.DELIVER_DUE_EMAILS)
        if missing > 0:
            queueing.enqueue_many(queueing.DELIVER_DUE_EMAILS, [() for _ in range(missing)], result_ttl=0)
        return max(missing, 0)
    except RedisError as error:
        log.warning("Redis injoignable (%s) : le balayage de la boîte d'envoi reprendra au prochain passage.", error)
        return 0
