"""Internal notes: what staff tell one another about a request or a need.

Never shown to experts or to the business (the need's thread is where experts talk).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Need, Solicitation, StaffNote, User
from app.services.accounts.users import require_staff
from app.services.errors import ServiceError

MAX_NOTE_LENGTH = 5_000


def clean_note(body: str | None, max_length: int = MAX_NOTE_LENGTH) -> str:
    """A note's text as stored, or a French refusal: the internal notes' and the relances desk's rule."""
    text = (body or "").replace("\r\n", "\n").strip()
    if not text:
        raise ServiceError("La note est vide.")
    if len(text) > max_length:
        raise ServiceError(f"La note dépasse {max_length} caractères.")
    return text


def add_note(target: Solicitation | Need, *, user: User, body: str) -> StaffNote:
    """Write a note by a staff member on a request or a need."""
    require_staff(user, "écrire une note interne")
    text = clean_note(body)
    note = StaffNote(user_id=user.id, body=text)
    if isinstance(target, Solicitation):
        note.solicitation_id = target.id
    else:
        note.need_id = target.id
    db.session.add(note)
    db.session.flush()
    return note


def notes_for(target: Solicitation | Need) -> list[StaffNote]:
    """The notes of a request or a need, oldest first, authors loaded."""
    column = StaffNote.solicitation_id if isinstance(target, Solicitation) else StaffNote.need_id
    return list(
        db.session.scalars(
            select(StaffNote)
            .where(column == target.id)
            .options(selectinload(StaffNote.user))
            .order_by(StaffNote.created_at, StaffNote.id)
        )
    )
