"""When two requests are the same business asking again, and what that means.

One notion, « still open »: waiting for staff (``in_progress``), or sent and its need not yet
closed (``quo`` or ``taking_care``). Two rules rest on it, under two names, because staff use
them for two things:

- **Doublon** (:func:`open_duplicate`): an earlier request still open, on the *same subject*,
  from the same SIRET or email, made within ``DUPLICATE_WINDOW``. Most likely the same need typed
  twice: the new request is held for staff instead of being sent.
- **Autre demande en cours** (:func:`is_open`, read by the desk's flags): *any* other open request
  from the same SIRET or email, whatever its subject or date. Not a reason to hold anything; a
  hint for whoever qualifies the request.

Emails are compared without case everywhere.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from app.extensions import db
from app.models import Need, Solicitation
from app.models.base import utcnow
from app.models.requests import NeedStatus, SolicitationStatus

DUPLICATE_WINDOW = timedelta(days=30)
OPEN_NEED_STATUSES = (NeedStatus.QUO, NeedStatus.TAKING_CARE)
DUPLICATE_LABEL = "Doublon"
OTHER_OPEN_LABEL = "Autre demande en cours"


def is_open(status: str, need_status: str | None) -> bool:
    """A request (its status, its need's) still open, as read from a row already loaded."""
    return status == SolicitationStatus.IN_PROGRESS or (
        status == SolicitationStatus.PROCESSED and need_status in OPEN_NEED_STATUSES
    )


def still_open() -> Any:
    """SQL condition of :func:`is_open`, over ``Solicitation`` outer-joined to its ``Need``."""
    return or_(
        Solicitation.status == SolicitationStatus.IN_PROGRESS,
        and_(Solicitation.status == SolicitationStatus.PROCESSED, Need.status.in_(OPEN_NEED_STATUSES)),
    )


def open_duplicate(solicitation: Solicitation) -> Solicitation | None:
    """The earlier request still open on the same subject from the same SIRET or email, made
    within ``DUPLICATE_WINDOW``: the « Doublon » that holds ``solicitation`` for staff."""
    return db.session.scalar(
        select(Solicitation)
        .outerjoin(Need, Need.solicitation_id == Solicitation.id)
        .where(
            Solicitation.id < solicitation.id,
            Solicitation.subject_id == solicitation.subject_id,
            Solicitation.created_at >= utcnow() - DUPLICATE_WINDOW,
            or_(Solicitation.siret == solicitation.siret, func.lower(Solicitation.email) == solicitation.email.lower()),
            still_open(),
        )
        .order_by(Solicitation.id.desc())
        .limit(1)
    )
