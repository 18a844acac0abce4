"""People who log into the back office: staff (``admin``) and partner referents."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Antenne, Institution
from app.models.base import SoftDeleteMixin, TimestampMixin, UTCDateTime

ROLES = ("admin", "referent")
ROLE_LABELS = {"admin": "Équipe support", "referent": "Référent partenaire"}


class User(UserMixin, TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once deleted (personal data blanked), which frees the address.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="admin")
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    antenne_id: Mapped[int | None] = mapped_column(ForeignKey("antennes.id"), index=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Account security: consecutive failed logins, the lock they cause, and the
    # moment the password last changed (invitation and reset links die with it).
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    institution: Mapped[Institution | None] = relationship()
    antenne: Mapped[Antenne | None] = relationship()
    invited_by: Mapped[User | None] = relationship(remote_side="User.id")

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'referent')", name="role"),
        CheckConstraint("deleted_at IS NOT NULL OR email IS NOT NULL", name="email_unless_deleted"),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )

    @property
    def is_active(self) -> bool:  # Flask-Login refuses sessions of inactive users
        return self.deleted_at is None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and self.is_active

    def __str__(self) -> str:
        return self.full_name or self.email or f"Utilisateur #{self.id}"


SESSION_END_REASONS = ("logout", "closed", "password", "deactivated", "expired")


class UserSession(db.Model):
    """One logged-in browser, known to the server: the signed cookie carries only its random
    token, so a copied cookie stops working as soon as the row is ended (logout, the person
    closing it from « Mon compte », a password change, staff deactivating the account)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # SHA-256 of the token: the database alone cannot open a session.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(12))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))

    user: Mapped[User] = relationship()

    __table_args__ = (
        CheckConstraint(
            "end_reason IS NULL OR end_reason IN ('logout', 'closed', 'password', 'deactivated', 'expired')",
            name="end_reason",
        ),
    )


class LoginFailure(db.Model):
    """One failed login, for an address (an account or not) from one origin (IP address).

    Failures lock an address for the origin they come from only: an attacker's attempts do not
    lock the owner out from elsewhere. Kept for the lock's window, then deleted."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(254))
    origin: Mapped[str] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_login_failures_address_created_at", "address", "created_at"),)
