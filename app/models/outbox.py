"""The outbox: every email is a row written in the transaction of the change that causes it,
so a change that rolls back sends nothing and a committed one is never lost."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import TimestampMixin, UTCDateTime


class EmailState(StrEnum):
    """An outbox row waits for (another) attempt, reached the relay, or failed for good."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


EMAIL_STATES = tuple(EmailState)
EMAIL_STATE_LABELS = {
    EmailState.QUEUED: "En attente d'envoi",
    EmailState.SENT: "Envoyé",
    EmailState.FAILED: "Échec définitif",
}


class FailureCause(StrEnum):
    """Whose fault a failed attempt was: it decides who must act.

    A recipient refusal is the address's problem (staff correct it); a refusal of the message
    itself (a line or a size over the SMTP limits) is a defect of ours that no retry heals; a
    relay that is down or refuses us heals with time or configuration.
    """

    RECIPIENT = "recipient"
    MESSAGE = "message"
    RELAY = "relay"
    INTERNAL = "internal"


FAILURE_CAUSE_LABELS = {
    FailureCause.RECIPIENT: "Destinataire refusé",
    FailureCause.MESSAGE: "Message refusé : défaut du service",
    FailureCause.RELAY: "Serveur d'envoi indisponible",
    FailureCause.INTERNAL: "Erreur interne",
}


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
    state: Mapped[str] = mapped_column(String(10), default=EmailState.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The cause of the last failed attempt (``FailureCause``); cleared when the email leaves.
    failure_cause: Mapped[str | None] = mapped_column(String(12))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A delivery run's claim on the row while it sends it (its token, and when the claim lapses:
    # a worker killed mid-batch leaves claims that lapse by themselves, and nothing is lost).
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("state IN ('queued', 'sent', 'failed')", name="state"),
        CheckConstraint(
            "failure_cause IS NULL OR failure_cause IN ('recipient', 'message', 'relay', 'internal')",
            name="failure_cause",
        ),
        Index("ix_outbound_emails_state_next", "state", "next_attempt_at"),
        # The rows never attempted, oldest first: what a delivery batch takes after the retries
        # that are due. Partial, so a backlog of 100,000 is walked in id order without a sort.
        Index(
            "ix_outbound_emails_fresh",
            "id",
            postgresql_where=text("state = 'queued' AND next_attempt_at IS NULL"),
            sqlite_where=text("state = 'queued' AND next_attempt_at IS NULL"),
        ),
    )

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipient}"
