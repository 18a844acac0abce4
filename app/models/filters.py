"""What routing reads beyond subject × territory (issue 14): filters on the company's profile
held by an institution, an antenne or an expert, the questions a subject asks on its form, and
the answers an institution takes.

A filter's code lists are kept as the space-separated text people type and the import file
carries (``47 56.10A``): one column each, compared whole in the audit trail, parsed once by
:attr:`RoutingFilter.criteria` into the rule of ``services.addressbook.company_filters``.
"""

from __future__ import annotations

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Antenne, Expert, Institution, InstitutionSubject
from app.models.base import TimestampMixin
from app.models.catalog import Subject

# The code-list columns of a filter, in the import file's order.
CODE_LIST_COLUMNS = (
    "naf_accepted",
    "naf_excluded",
    "legal_forms_accepted",
    "legal_forms_excluded",
    "activities_accepted",
    "excluded_communes",
)
NUMBER_COLUMNS = ("min_years", "max_years", "min_headcount", "max_headcount")


class RoutingFilter(TimestampMixin, db.Model):
    """« Filtre de mise en relation »: its holder's experts receive a need only when it accepts
    the company (and it applies to the need's subject: its subjects, or all when it has none)."""

    __tablename__ = "routing_filters"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    antenne_id: Mapped[int | None] = mapped_column(ForeignKey("antennes.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"), index=True)
    min_years: Mapped[int | None]
    max_years: Mapped[int | None]
    min_headcount: Mapped[int | None]
    max_headcount: Mapped[int | None]
    naf_accepted: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    naf_excluded: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    legal_forms_accepted: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    legal_forms_excluded: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    activities_accepted: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    excluded_communes: Mapped[str] = mapped_column(String(4000), default="", server_default="")

    institution: Mapped[Institution | None] = relationship()
    antenne: Mapped[Antenne | None] = relationship()
    expert: Mapped[Expert | None] = relationship()
    subject_links: Mapped[list[RoutingFilterSubject]] = relationship(
        back_populates="routing_filter", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN institution_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN antenne_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN expert_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_holder",
        ),
        CheckConstraint("min_years IS NULL OR min_years >= 0", name="min_years"),
        CheckConstraint("max_years IS NULL OR max_years >= 0", name="max_years"),
        CheckConstraint("min_headcount IS NULL OR min_headcount >= 0", name="min_headcount"),
        CheckConstraint("max_headcount IS NULL OR max_headcount >= 0", name="max_headcount"),
        CheckConstraint("min_years IS NULL OR max_years IS NULL OR min_years <= max_years", name="years_order"),
        CheckConstraint(
            "min_headcount IS NULL OR max_headcount IS NULL OR min_headcount <= max_headcount",
            name="headcount_order",
        ),
    )

    @property
    def holder_text(self) -> str:
        """« institution CMA », « antenne CMA Rhône — CMA », « expert Marie Dupont »: whose filter."""
        if self.expert is not None:
            return f"expert {self.expert.full_name}"
        if self.antenne is not None:
            return f"antenne {self.antenne}"
        return f"institution {self.institution.name}" if self.institution else "?"

    @property
    def subjects(self) -> list[Subject]:
        return [link.subject for link in self.subject_links]

    def __str__(self) -> str:
        return f"Filtre #{self.id} — {self.holder_text}" if self.id else "Nouveau filtre"


class RoutingFilterSubject(db.Model):
    """A subject a filter is limited to (a filter without any applies to every subject)."""

    __tablename__ = "routing_filter_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    routing_filter_id: Mapped[int] = mapped_column(ForeignKey("routing_filters.id", ondelete="CASCADE"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)

    routing_filter: Mapped[RoutingFilter] = relationship(back_populates="subject_links")
    subject: Mapped[Subject] = relationship()

    __table_args__ = (UniqueConstraint("routing_filter_id", "subject_id"),)

    def __str__(self) -> str:
        return self.subject.label if self.subject else str(self.subject_id)


class SubjectQuestion(TimestampMixin, db.Model):
    """A question a subject's form asks (« Avez-vous plus de 10 salariés ? »), answered by one of
    ``choices`` (« Oui », « Non » for a yes/no question)."""

    __tablename__ = "subject_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    # Stable name of the question: answers and expectations refer to it, the catalog file too.
    key: Mapped[str] = mapped_column(String(60))
    label: Mapped[str] = mapped_column(String(300))
    choices: Mapped[list] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(default=0)

    subject: Mapped[Subject] = relationship()

    __table_args__ = (UniqueConstraint("subject_id", "key"),)

    def __str__(self) -> str:
        return self.label


class OfferExpectation(TimestampMixin, db.Model):
    """One combination of answers an institution takes on a subject: ``answers`` maps question
    keys to the answer expected (a question it does not name takes any answer). An offer
    without any expectation takes every request."""

    __tablename__ = "offer_expectations"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_subject_id: Mapped[int] = mapped_column(
        ForeignKey("institution_subjects.id", ondelete="CASCADE"), index=True
    )
    answers: Mapped[dict] = mapped_column(JSON, default=dict)

    offer: Mapped[InstitutionSubject] = relationship()

    def __str__(self) -> str:
        return " ; ".join(f"{key} = {value}" for key, value in sorted(self.answers.items()))
