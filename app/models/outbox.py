"""The outbox (decision 2): every email is a row written with the change that causes it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import TimestampMixin

EMAIL_STATES = ("queued", "sent", "failed")
EMAIL_STATE_LABELS = {"queued": "En attente d'envoi", "sent": "Envoyé", "failed": "Échec définitif"}


class OutboundEmail(TimestampMixin, db.Model):
    __tablename__ = "outbound_emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    # One row per event: "solicitation:12:confirmation", "match:40:new"… A second write of the
    # same event is refused by the UNIQUE constraint, so an event never emails twice.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("state IN ('queued', 'sent', 'failed')", name="state"),
        Index("ix_outbound_emails_state_next", "state", "next_attempt_at"),
    )

    @property
    def message_id(self) -> str:
        """Derived from the event key, so a rare duplicate delivery carries the same Message-ID."""
        from app.services.outbox import message_id_for

        return message_id_for(self.key)

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipient}"
