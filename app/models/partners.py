"""Partners' channels (issue 16): the partners whose sites bring requests, their landings (a
subset of the catalog, embeddable in an iframe), and the institutions' API keys.

Partner → Landing → LandingSubject (one offered subject, maybe with the partner's own title).
A request keeps where it came from (``Solicitation.channel``, its landing, key, filer and the
embedding page's address): lists, exports and statistics read it there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Institution
from app.models.base import TimestampMixin, UTCDateTime
from app.models.catalog import Subject
from app.models.users import User

# Where a request came from. At most 10 characters: the statistics' cells key them.
CHANNELS = ("site", "landing", "iframe", "api", "backoffice")
CHANNEL_LABELS = {
    "site": "Site Place des Entreprises",
    "landing": "Page d'un partenaire",
    "iframe": "Formulaire intégré chez un partenaire",
    "api": "API d'un partenaire",
    "backoffice": "Saisie par un conseiller",
}


class Partner(TimestampMixin, db.Model):
    """A site that brings requests: its name, its institution if it has one, its logo, and the
    origins (``https://www.example.fr``) allowed to embed its landings."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    # An image address (https, or a file of this site): shown, never fetched by the server.
    logo_url: Mapped[str | None] = mapped_column(String(500))
    # The exact origins allowed in ``frame-ancestors``, normalised by ``services.partners.landings``.
    origins: Mapped[list] = mapped_column(JSON, default=list)

    institution: Mapped[Institution | None] = relationship()
    landings: Mapped[list[Landing]] = relationship(back_populates="partner", order_by="Landing.slug")

    def __str__(self) -> str:
        return self.name


class Landing(TimestampMixin, db.Model):
    """A partner's entry page: a subset of the subjects, its own titles, an optional banner.

    Embedded, it takes four shapes (the whole landing, one theme, a list of subjects, one
    subject's form): the address chooses, the landing's subjects bound what it may show."""

    __tablename__ = "landings"

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    intro: Mapped[str | None] = mapped_column(Text)
    banner: Mapped[str | None] = mapped_column(Text)
    # A paused landing answers with a page that says so, embedded or not.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    partner: Mapped[Partner] = relationship(back_populates="landings")
    subjects: Mapped[list[LandingSubject]] = relationship(
        back_populates="landing", cascade="all, delete-orphan", order_by="(LandingSubject.position, LandingSubject.id)"
    )

    __table_args__ = (CheckConstraint("slug <> ''", name="slug_not_empty"),)

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    def __str__(self) -> str:
        return f"{self.title} ({self.slug})"


class LandingSubject(db.Model):
    __tablename__ = "landing_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    landing_id: Mapped[int] = mapped_column(ForeignKey("landings.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    # The partner's own wording of the subject, else the catalog's label.
    title: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)

    landing: Mapped[Landing] = relationship(back_populates="subjects")
    subject: Mapped[Subject] = relationship()

    __table_args__ = (UniqueConstraint("landing_id", "subject_id"),)

    @property
    def label(self) -> str:
        return self.title or self.subject.label

    def __str__(self) -> str:
        return self.label


class ApiKey(TimestampMixin, db.Model):
    """An institution's key to the API. Only its public prefix and a hash of the whole key are
    kept: the key is shown once, at creation. Expiry and revocation are read on every call."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    institution: Mapped[Institution] = relationship()
    created_by: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"Clé {self.prefix}… ({self.institution.name if self.institution else self.institution_id})"
