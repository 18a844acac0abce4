"""Requests: what the public form received (Solicitation) and what it became.

Solicitation → Company / Facility (SIRET, commune) / Contact → Need (one subject) → Match
(one expert). Need status is stored, and recomputed by ``services.matches`` whenever one of
its matches changes (``NEED_STATUS_ORDER`` there).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Expert
from app.models.base import TimestampMixin, UTCDateTime
from app.models.catalog import Subject
from app.models.geo import Commune
from app.models.partners import CHANNELS, ApiKey, Landing
from app.models.users import User

if TYPE_CHECKING:
    from app.models.desk import SatisfactionAnswer


class SolicitationStatus(StrEnum):
    """Where a request stands at the desk: waiting for staff, sent to the experts, or abandoned."""

    IN_PROGRESS = "in_progress"
    PROCESSED = "processed"
    CANCELED = "canceled"


SOLICITATION_STATUSES = tuple(SolicitationStatus)
SOLICITATION_STATUS_LABELS = {
    SolicitationStatus.IN_PROGRESS: "À qualifier",
    SolicitationStatus.PROCESSED: "Transmise",
    SolicitationStatus.CANCELED: "Abandonnée",
}
# Why staff canceled a request (``services.requests.cancellation`` names them); ``other`` is a
# reason typed by hand, kept in the notes.
CANCEL_REASON_CODES = ("out_of_scope", "not_a_company", "incomplete", "spam", "other")


class MatchStatus(StrEnum):
    """What an expert said of a request sent to them (the names the Rails service stores)."""

    QUO = "quo"
    TAKING_CARE = "taking_care"
    DONE = "done"
    DONE_NO_HELP = "done_no_help"
    DONE_NOT_REACHABLE = "done_not_reachable"
    NOT_FOR_ME = "not_for_me"


# A need's status sums up its matches' in the same names (``not_for_me``: refused by all).
NeedStatus = MatchStatus

MATCH_STATUSES = tuple(MatchStatus)
MATCH_STATUS_LABELS = {
    MatchStatus.QUO: "En attente",
    MatchStatus.TAKING_CARE: "Prise en charge",
    MatchStatus.DONE: "Aide proposée",
    MatchStatus.DONE_NO_HELP: "Pas d'aide disponible",
    MatchStatus.DONE_NOT_REACHABLE: "Entreprise injoignable",
    MatchStatus.NOT_FOR_ME: "Refusé",
}
NEED_STATUSES = MATCH_STATUSES
NEED_STATUS_LABELS = {**MATCH_STATUS_LABELS, NeedStatus.NOT_FOR_ME: "Refusé par tous"}


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Solicitation(TimestampMixin, db.Model):
    """The public form's submission, exactly as typed, with its qualification state."""

    __tablename__ = "solicitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=SolicitationStatus.IN_PROGRESS, index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str] = mapped_column(String(40))
    siret: Mapped[str] = mapped_column(String(14), index=True)
    postal_code: Mapped[str] = mapped_column(String(5))
    insee_code: Mapped[str] = mapped_column(ForeignKey("communes.code"))
    description: Mapped[str] = mapped_column(Text)
    # What the company registry said of the SIRET, when it answered (name, NAF, legal form…).
    company_name: Mapped[str | None] = mapped_column(String(300))
    registry_data: Mapped[dict | None] = mapped_column(JSON)
    # The answers to the subject's questions (``SubjectQuestion.key`` → the answer chosen).
    subject_answers: Mapped[dict | None] = mapped_column(JSON)
    # Why it was not routed automatically: ["duplicate", "no_expert", …] (services.solicitations).
    qualification_notes: Mapped[list] = mapped_column(JSON, default=list)
    mtm_campaign: Mapped[str | None] = mapped_column(String(200))
    mtm_kwd: Mapped[str | None] = mapped_column(String(200))
    mtm_source: Mapped[str | None] = mapped_column(String(200))
    # Where it came from (issue 16): ``models.partners.CHANNELS``, the partner's landing, the
    # API key that posted it, the person who filed it for the business, the embedding page.
    channel: Mapped[str] = mapped_column(String(10), default="site", server_default="site", index=True)
    landing_id: Mapped[int | None] = mapped_column(ForeignKey("landings.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    filed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    origin_url: Mapped[str | None] = mapped_column(String(1000))
    # The one-time key of the public form's copy it came from: a second post of it stores nothing.
    submission_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set with ``status == "canceled"``: the one fact the desk's tabs and the spam block read.
    cancel_reason: Mapped[str | None] = mapped_column(String(20), index=True)
    # Lower-cased, accent-free words staff search on (services.search keeps it current).
    search_document: Mapped[str] = mapped_column(Text, default="", server_default="")

    subject: Mapped[Subject] = relationship()
    commune: Mapped[Commune] = relationship()
    landing: Mapped[Landing | None] = relationship()
    api_key: Mapped[ApiKey | None] = relationship()
    filed_by: Mapped[User | None] = relationship()
    # Usually one need; staff may split a request covering several subjects into several.
    needs: Mapped[list[Need]] = relationship(back_populates="solicitation", order_by="Need.id")

    __table_args__ = (
        CheckConstraint(f"status IN ({_in(SOLICITATION_STATUSES)})", name="status"),
        CheckConstraint(f"channel IN ({_in(CHANNELS)})", name="channel"),
        CheckConstraint(
            f"cancel_reason IS NULL OR (status = 'canceled' AND cancel_reason IN ({_in(CANCEL_REASON_CODES)}))",
            name="cancel_reason",
        ),
        # The desk's flags look up other requests by address, compared without case.
        Index("ix_solicitations_email_lower", text("lower(email::text)")).ddl_if(dialect="postgresql"),
        Index(
            "ix_solicitations_fulltext",
            text("to_tsvector('french'::regconfig, search_document)"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    @property
    def need(self) -> Need | None:
        """The first need (the only one unless staff split the request)."""
        return self.needs[0] if self.needs else None

    def __str__(self) -> str:
        return f"Demande #{self.id} — {self.full_name}"


class Company(TimestampMixin, db.Model):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    siren: Mapped[str] = mapped_column(String(9), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    legal_form: Mapped[str | None] = mapped_column(String(200))

    facilities: Mapped[list[Facility]] = relationship(back_populates="company")
    contacts: Mapped[list[Contact]] = relationship(back_populates="company")

    def __str__(self) -> str:
        return self.name


class Facility(TimestampMixin, db.Model):
    """An établissement: where the business is, hence whose experts it reaches."""

    __tablename__ = "facilities"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    commune_code: Mapped[str] = mapped_column(ForeignKey("communes.code"))
    naf_code: Mapped[str | None] = mapped_column(String(10))
    # What the registry said of the établissement (its company's when it said nothing of it):
    # INSEE's headcount bracket code (« NN »: unknown), creation date, nature of activity.
    # None when the registry was not asked or did not answer.
    headcount_code: Mapped[str | None] = mapped_column(String(2))
    created_on: Mapped[date | None] = mapped_column(Date)
    activity_nature: Mapped[str | None] = mapped_column(String(30))

    company: Mapped[Company] = relationship(back_populates="facilities")
    commune: Mapped[Commune] = relationship()

    # Territory filters of the needs list read the facilities of a commune set from the index alone.
    __table_args__ = (Index("ix_facilities_commune_code_id", "commune_code", "id"),)

    def __str__(self) -> str:
        return f"{self.company.name} — {self.siret}" if self.company else self.siret


class Contact(TimestampMixin, db.Model):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(40))

    company: Mapped[Company] = relationship(back_populates="contacts")

    def __str__(self) -> str:
        return self.full_name


class Need(TimestampMixin, db.Model):
    """One subject for one facility; its status is derived from its matches."""

    __tablename__ = "needs"

    id: Mapped[int] = mapped_column(primary_key=True)
    solicitation_id: Mapped[int | None] = mapped_column(ForeignKey("solicitations.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=MatchStatus.QUO, index=True)
    # When the business was told its need had failed (nobody took it): the need is given up,
    # its status stays what its matches say.
    abandoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What routing's filters and expected answers decided when it was sent, for each expert
    # they concerned (kept or excluded): ``[{"expert", "antenne", "institution", "decision",
    # "checks": [French lines]}]``; staff read why a partner did or did not receive it.
    routing_checks: Mapped[list | None] = mapped_column(JSON)
    # Lower-cased, accent-free company name, SIRET, contact, email and description
    # (services.search keeps it current); PostgreSQL searches it through a GIN index.
    search_document: Mapped[str] = mapped_column(Text, default="", server_default="")

    solicitation: Mapped[Solicitation | None] = relationship(back_populates="needs")
    subject: Mapped[Subject] = relationship()
    facility: Mapped[Facility] = relationship()
    contact: Mapped[Contact] = relationship()
    matches: Mapped[list[Match]] = relationship(back_populates="need", order_by="Match.id")
    # The business's survey answer, if it gave one (written by services.requests.satisfaction).
    satisfaction: Mapped[SatisfactionAnswer | None] = relationship(viewonly=True, uselist=False)

    __table_args__ = (
        CheckConstraint(f"status IN ({_in(NEED_STATUSES)})", name="status"),
        Index("ix_needs_created_at", "created_at"),
        # Territory + status filters: the needs of a set of facilities with a status, index only.
        Index("ix_needs_facility_id_status", "facility_id", "status"),
        Index(
            "ix_needs_fulltext",
            text("to_tsvector('french'::regconfig, search_document)"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    def __str__(self) -> str:
        return f"Besoin #{self.id} — {self.subject.label if self.subject else ''}"


class Match(TimestampMixin, db.Model):
    """One need sent to one expert, with why it was routed there and where the expert stands."""

    __tablename__ = "matches"

    id: Mapped[int] = mapped_column(primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"))
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=MatchStatus.QUO, index=True)
    # The zone entry that made the expert receive it: "departement:69", "national"…
    zone: Mapped[str | None] = mapped_column(String(30))
    zone_owner: Mapped[str | None] = mapped_column(String(10))  # "antenne" or "expert"; None when added by staff
    taken_care_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    need: Mapped[Need] = relationship(back_populates="matches")
    expert: Mapped[Expert] = relationship()

    __table_args__ = (
        UniqueConstraint("need_id", "expert_id"),
        CheckConstraint(f"status IN ({_in(MATCH_STATUSES)})", name="status"),
        Index("ix_matches_need_id", "need_id"),
        Index("ix_matches_created_at", "created_at"),
        # An expert's matches by date: the inbox's order, and the relances desk's « months of
        # silence » (was anything received in the 90 days before?).
        Index("ix_matches_expert_id_created_at", "expert_id", "created_at"),
    )

    def __str__(self) -> str:
        return f"Mise en relation #{self.id}"
