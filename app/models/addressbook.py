"""The address book: Institution → Antenne → Expert, what they offer, and where.

Zones are territory references ``(kind, code)`` owned by an antenne or, as an override, by
an expert (never expanded to communes: routing compares codes). ``national`` is a flag on either owner.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import SoftDeleteMixin, TimestampMixin, UTCDateTime, utcnow
from app.models.catalog import Subject

ZONE_KINDS = ("region", "departement", "epci", "commune")
ZONE_KIND_LABELS = {
    "region": "Région",
    "departement": "Département",
    "epci": "EPCI",
    "commune": "Commune",
    "national": "National",
}


class Institution(TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)

    antennes: Mapped[list[Antenne]] = relationship(back_populates="institution", order_by="Antenne.name")
    subject_offers: Mapped[list[InstitutionSubject]] = relationship(back_populates="institution")

    def __str__(self) -> str:
        return self.name


class Antenne(TimestampMixin, SoftDeleteMixin, db.Model):
    __tablename__ = "antennes"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    national: Mapped[bool] = mapped_column(default=False)

    institution: Mapped[Institution] = relationship(back_populates="antennes")
    experts: Mapped[list[Expert]] = relationship(back_populates="antenne", order_by="Expert.full_name")
    zones: Mapped[list[Zone]] = relationship(
        back_populates="antenne",
        cascade="all, delete-orphan",
        foreign_keys="Zone.antenne_id",
        order_by="(Zone.kind, Zone.code)",
    )

    __table_args__ = (
        UniqueConstraint("institution_id", "name"),
        # Routing reads the few national antennes without scanning the others.
        Index("ix_antennes_national", "id", postgresql_where=text("national"), sqlite_where=text("national")),
    )

    def __str__(self) -> str:
        return f"{self.name} — {self.institution.name}" if self.institution else self.name


class Expert(TimestampMixin, SoftDeleteMixin, db.Model):
    """A person or a team. Deleting blanks the personal fields; past matches keep the row."""

    __tablename__ = "experts"

    id: Mapped[int] = mapped_column(primary_key=True)
    antenne_id: Mapped[int] = mapped_column(ForeignKey("antennes.id"), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    # NULL once deleted, so the (antenne, email) slot is free for a newcomer.
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    job_title: Mapped[str | None] = mapped_column(String(200))
    # Own zone override: national, or the expert's zone rows; neither means "the antenne's zone".
    national: Mapped[bool] = mapped_column(default=False)
    # An announced absence (holidays, leave): shown to staff and to the need's other experts.
    absent_from: Mapped[date | None] = mapped_column(Date)
    absent_until: Mapped[date | None] = mapped_column(Date)

    antenne: Mapped[Antenne] = relationship(back_populates="experts")
    zones: Mapped[list[Zone]] = relationship(
        back_populates="expert",
        cascade="all, delete-orphan",
        foreign_keys="Zone.expert_id",
        order_by="(Zone.kind, Zone.code)",
    )
    subjects: Mapped[list[ExpertSubject]] = relationship(back_populates="expert", cascade="all, delete-orphan")

    __table_args__ = (
        UniqueConstraint("antenne_id", "email"),
        CheckConstraint("deleted_at IS NOT NULL OR email IS NOT NULL", name="email_unless_deleted"),
        CheckConstraint(
            "absent_from IS NULL OR absent_until IS NULL OR absent_from <= absent_until", name="absence_dates"
        ),
        # Routing reads the few national experts without scanning 100,000 rows.
        Index("ix_experts_national", "id", postgresql_where=text("national"), sqlite_where=text("national")),
    )

    @property
    def has_own_zone(self) -> bool:
        return self.national or bool(self.zones)

    def __str__(self) -> str:
        return self.full_name


class InstitutionSubject(TimestampMixin, db.Model):
    """An institution's offer of a subject; experts take subjects through it."""

    __tablename__ = "institution_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)

    institution: Mapped[Institution] = relationship(back_populates="subject_offers")
    subject: Mapped[Subject] = relationship()

    __table_args__ = (UniqueConstraint("institution_id", "subject_id"),)

    def __str__(self) -> str:
        return f"{self.subject.label} ({self.institution.name})"


class ExpertSubject(TimestampMixin, db.Model):
    __tablename__ = "expert_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"))
    institution_subject_id: Mapped[int] = mapped_column(ForeignKey("institution_subjects.id"), index=True)
    criteria: Mapped[str | None] = mapped_column(Text)

    expert: Mapped[Expert] = relationship(back_populates="subjects")
    institution_subject: Mapped[InstitutionSubject] = relationship()

    __table_args__ = (UniqueConstraint("expert_id", "institution_subject_id"),)

    def __str__(self) -> str:
        return str(self.institution_subject)


class Zone(db.Model):
    """One territory reference of an antenne's zone, or of an expert's own zone."""

    __tablename__ = "zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    antenne_id: Mapped[int | None] = mapped_column(ForeignKey("antennes.id"))
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"))
    kind: Mapped[str] = mapped_column(String(12))
    code: Mapped[str] = mapped_column(String(9))

    antenne: Mapped[Antenne | None] = relationship(back_populates="zones", foreign_keys=[antenne_id])
    expert: Mapped[Expert | None] = relationship(back_populates="zones", foreign_keys=[expert_id])

    __table_args__ = (
        CheckConstraint("(antenne_id IS NULL) <> (expert_id IS NULL)", name="one_owner"),
        CheckConstraint("kind IN ('region', 'departement', 'epci', 'commune')", name="kind"),
        UniqueConstraint("antenne_id", "kind", "code"),
        UniqueConstraint("expert_id", "kind", "code"),
        # Routing looks zones up by territory first, then joins their owner.
        Index("ix_zones_kind_code_owner", "kind", "code", "antenne_id", "expert_id"),
        Index("ix_zones_expert_id", "expert_id"),
    )

    @property
    def reference(self) -> str:
        return f"{self.kind}:{self.code}"

    def __str__(self) -> str:
        return self.reference


class AddressbookUpload(db.Model):
    """An uploaded address book waiting for its uploader's confirmation after the preview.

    Kept in the database rather than on a web server's disk, so the confirmation works
    whichever instance serves it; the row is consumed by the import it leads to.
    """

    __tablename__ = "addressbook_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
