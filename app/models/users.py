"""People who log into the back office: staff (``admin``) and partner referents."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String
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
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
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
