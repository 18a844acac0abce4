"""The need's discussion thread, and replies by email held for staff.

Experts and staff write comments; the business never sees them. A reply by email becomes a
comment only when its address token and its sender check out; otherwise it is kept, with the
reason, for staff to look at (InboundMessage).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Expert
from app.models.base import UTCDateTime, utcnow
from app.models.requests import Need
from app.models.users import User

COMMENT_SOURCES = ("web", "email", "admin")


class Comment(db.Model):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"))
    # Exactly one author: an expert (through its match) or a staff user.
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10), default="web")
    # Names of the attachments of an email reply (the files themselves are not kept).
    attachments: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set once the other participants have been emailed about it (grouped notifications).
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    need: Mapped[Need] = relationship()
    expert: Mapped[Expert | None] = relationship()
    user: Mapped[User | None] = relationship()

    __table_args__ = (
        CheckConstraint("(expert_id IS NULL) <> (user_id IS NULL)", name="one_author"),
        CheckConstraint("source IN ('web', 'email', 'admin')", name="source"),
        Index("ix_comments_need_created", "need_id", "created_at"),
        Index("ix_comments_pending", "notified_at", "need_id"),
    )

    def __str__(self) -> str:
        return f"Commentaire #{self.id}"


class InboundState(StrEnum):
    """A reply received by email: held for staff (with its reason), posted on the thread, or set aside."""

    HELD = "held"
    POSTED = "posted"
    DISCARDED = "discarded"


INBOUND_STATES = tuple(InboundState)


class InboundMessage(db.Model):
    """An email reply received for a thread: posted as a comment, or held with its reason."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sender: Mapped[str | None] = mapped_column(String(320))
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str | None] = mapped_column(String(500), unique=True)
    text: Mapped[str | None] = mapped_column(Text)  # the cleaned reply, or the raw text when held
    attachments: Mapped[list] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(10), default=InboundState.HELD, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"))

    comment: Mapped[Comment | None] = relationship()

    __table_args__ = (CheckConstraint("state IN ('held', 'posted', 'discarded')", name="state"),)

    def __str__(self) -> str:
        return f"Réponse reçue #{self.id}"
