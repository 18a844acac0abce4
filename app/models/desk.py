"""What staff add around requests: internal notes, stars, the export files they asked for, and
the relances desk's marks and notes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Expert
from app.models.base import UTCDateTime, utcnow
from app.models.requests import Need, Solicitation
from app.models.users import User


class StaffNote(db.Model):
    """An internal note on a request or a need: staff only, never shown to experts or businesses."""

    __tablename__ = "staff_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    solicitation_id: Mapped[int | None] = mapped_column(ForeignKey("solicitations.id"), index=True)
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    solicitation: Mapped[Solicitation | None] = relationship()
    need: Mapped[Need | None] = relationship()
    user: Mapped[User] = relationship()

    __table_args__ = (CheckConstraint("(solicitation_id IS NULL) <> (need_id IS NULL)", name="one_subject"),)

    def __str__(self) -> str:
        return f"Note #{self.id}"


class NeedStar(db.Model):
    """A staff member watches a need (« suivre »): it shows in their « Suivis » filter."""

    __tablename__ = "need_stars"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "need_id"),)


EXPORT_KINDS = ("solicitations", "needs", "matches")
EXPORT_KIND_LABELS = {"solicitations": "Sollicitations", "needs": "Besoins", "matches": "Mises en relation"}
EXPORT_FORMATS = ("csv", "xlsx")


class ExportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


EXPORT_STATES = tuple(ExportState)
EXPORT_STATE_LABELS = {
    ExportState.QUEUED: "En attente",
    ExportState.RUNNING: "En cours",
    ExportState.DONE: "Prêt",
    ExportState.FAILED: "Échec",
}


class Export(db.Model):
    """A file built by a job from a list's filters, downloadable by its owner until it expires.

    The file is kept in the database, so any web process can serve it and purging is a DELETE.
    """

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(10))
    # The list's URL arguments (search, filters, tab) the file was asked with.
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(10), default=ExportState.QUEUED)
    rows_done: Mapped[int] = mapped_column(default=0)
    rows_total: Mapped[int | None] = mapped_column()
    filename: Mapped[str | None] = mapped_column(String(200))
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()

    __table_args__ = (
        CheckConstraint("kind IN ('solicitations', 'needs', 'matches')", name="kind"),
        CheckConstraint("format IN ('csv', 'xlsx')", name="format"),
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
        Index("ix_exports_expires_at", "expires_at"),
    )

    def __str__(self) -> str:
        return f"Export #{self.id}"


SATISFACTION_OUTCOMES = {
    "discover": "Découvrir l'accompagnement d'une institution",
    "actions": "Entreprendre des actions auxquelles vous n'auriez pas pensé",
    "choice": "Faciliter un choix",
    "other": "Autre chose",
}


class SatisfactionAnswer(db.Model):
    """The business's answer to the survey of one need: one row per need, updated if it answers again."""

    __tablename__ = "satisfaction_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"), unique=True)
    contacted: Mapped[bool | None] = mapped_column()
    useful: Mapped[bool | None] = mapped_column()
    outcomes: Mapped[list] = mapped_column(JSON, default=list)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Staff shared it (comment included) with the experts who closed the need and their referents.
    shared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    need: Mapped[Need] = relationship()


# Who a relances desk's mark or note belongs to: staff share one desk, the referents of one
# institution another (a referent's « Traité » must not hide the item from staff).
STAFF_DESK = "staff"


class ReminderMark(db.Model):
    """« Traité » on the relances desk: one need (or expert) cleared from one basket, for one desk.

    A need comes back in its next basket (a mark is per basket); an expert comes back a week
    later if still in the basket (``services.requests.reminders``).
    """

    __tablename__ = "reminder_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"), index=True)
    basket: Mapped[str] = mapped_column(String(30))
    # ``STAFF_DESK`` or ``institution:<id>``.
    desk: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()

    __table_args__ = (
        CheckConstraint("(need_id IS NULL) <> (expert_id IS NULL)", name="one_subject"),
        UniqueConstraint("need_id", "basket", "desk", name="uq_reminder_marks_need"),
        UniqueConstraint("expert_id", "basket", "desk", name="uq_reminder_marks_expert"),
    )


class ReminderNote(db.Model):
    """A note of the relances desk on a need or an expert (« rappelé le 3, rappeler lundi »).

    Staff read every desk's notes; referents their institution's only. Never shown to experts."""

    __tablename__ = "reminder_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"), index=True)
    desk: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()
    need: Mapped[Need | None] = relationship()
    expert: Mapped[Expert | None] = relationship()

    __table_args__ = (CheckConstraint("(need_id IS NULL) <> (expert_id IS NULL)", name="one_subject"),)
