"""Staff drop a request: why, who is told, and what it means for later requests.

Each reason has a code, stored in ``Solicitation.cancel_reason`` (indexed: the desk's tabs and
the block of an address read that one column) and a note for the request's history. Three
reasons tell the business why, each with its own email (``emails/solicitation_canceled_<code>``);
spam tells nobody, and the address then always waits for staff.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, func, select

from app.dates import paris_text
from app.extensions import db
from app.models import Solicitation, User
from app.models.base import utcnow
from app.models.requests import CANCEL_REASON_CODES, SolicitationStatus
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email

SPAM_REASON = "spam"
# A reason typed by staff (kept in the notes), or none.
OTHER_REASON = "other"
CANCEL_REASONS = {
    "out_of_scope": "Hors du champ du service",
    "not_a_company": "Pas une entreprise",
    "incomplete": "Demande incomplète",
    SPAM_REASON: "Spam",
}
assert set(CANCEL_REASONS) | {OTHER_REASON} == set(CANCEL_REASON_CODES)
EMAILED_REASONS = frozenset({"out_of_scope", "not_a_company", "incomplete"})
CANCEL_NOTE_PREFIX = "Abandonnée : "


def is_spam() -> Any:
    """SQL condition: the request was canceled as spam."""
    return Solicitation.cancel_reason == SPAM_REASON


def address_canceled_as_spam(email: str) -> bool:
    """Whether an earlier request from this address was canceled as spam."""
    return bool(
        db.session.scalar(
            select(exists().where(func.lower(Solicitation.email) == (email or "").strip().lower(), is_spam()))
        )
    )


def cancel_solicitation(
    solicitation: Solicitation,
    *,
    reason: str | None = None,
    notify: bool | None = None,
    user: User | None = None,
) -> None:
    """Staff drop a request.

    ``reason`` is one of ``CANCEL_REASONS`` (« Hors du champ du service »…) or free text; it is
    kept in the request's notes. A reason with its own email (``EMAILED_REASONS``) tells the
    business why and what to do instead, unless ``notify=False``; ``notify`` defaults to that
    choice made by the reason. A reason of « spam » sends nothing and blocks later requests
    from the same address (:func:`address_canceled_as_spam`).
    """
    raw = (reason or "").strip()
    code = raw.casefold() if raw.casefold() in CANCEL_REASONS else None
    if notify is None:
        notify = code in EMAILED_REASONS
    if notify and code not in EMAILED_REASONS:
        raise ServiceError("Aucun email n'est prévu pour ce motif : choisissez un motif avec email ou n'envoyez rien.")
    if user is not None:
        with acting_as(actor_label(user), user.id):
            _cancel(solicitation, raw, code, notify)
            db.session.flush()
    else:
        _cancel(solicitation, raw, code, notify)
    db.session.flush()


def _cancel(solicitation: Solicitation, raw: str, code: str | None, notify: bool) -> None:
    # The same lock as sending: a request is either sent or canceled, never both.
    status = db.session.scalar(select(Solicitation.status).where(Solicitation.id == solicitation.id).with_for_update())
    if status == SolicitationStatus.CANCELED:
        raise ServiceError(f"La demande #{solicitation.id} est déjà abandonnée.")
    if status == SolicitationStatus.PROCESSED:
        raise ServiceError(
            f"La demande #{solicitation.id} a déjà été transmise aux experts : elle ne peut être abandonnée."
        )
    if code == SPAM_REASON:
        note = CANCEL_NOTE_PREFIX + SPAM_REASON
    elif code is not None:
        note = CANCEL_NOTE_PREFIX + CANCEL_REASONS[code]
    else:
        note = CANCEL_NOTE_PREFIX + (raw or "sans motif")
    solicitation.status = SolicitationStatus.CANCELED
    solicitation.canceled_at = utcnow()
    solicitation.cancel_reason = code or OTHER_REASON
    solicitation.qualification_notes = [*(solicitation.qualification_notes or []), note]
    if notify and code is not None:
        _queue_cancellation_email(solicitation, code)


def _queue_cancellation_email(solicitation: Solicitation, code: str) -> None:
    """The business learns why its request goes no further, and where to turn instead."""
    subject = solicitation.subject
    queue_email(
        f"solicitation:{solicitation.id}:canceled",
        to=solicitation.email,
        template=f"solicitation_canceled_{code}",
        context={
            "full_name": solicitation.full_name,
            "subject": subject.label if subject else "",
            "subject_slug": subject.slug if subject and not subject.is_archived else None,
            "description": solicitation.description,
            "company_name": solicitation.company_name,
            "submitted_on": paris_text(solicitation.created_at, "%d/%m/%Y"),
        },
    )
