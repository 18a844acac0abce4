"""The outbox (contract §6, decision 2): emails are rows written in the same transaction as
their cause, under a unique key per event, and delivered afterwards by a job.

``queue_email`` only adds the row to the caller's session; once that transaction commits, the
rows it added are handed to the delivery job (``app/jobs``). If Redis is down at that moment
nothing is lost: the row stays ``queued`` and the periodic sweep hands it over again.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import current_app, render_template
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import OutboundEmail

log = logging.getLogger(__name__)
_PENDING = "outbox_pending_ids"


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
    db.session.flush([email])
    db.session.info.setdefault(_PENDING, []).append(email.id)
    return email


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
