"""The public statistics' aggregates (issue 15): counts per month, région and theme, refreshed by
``flask rq cron`` (``services.statistics.aggregates``) so that ``/stats`` never scans the
requests. A page sums the cells its filters select; shares are computed from summed counts.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.addressbook import Antenne, Institution
from app.models.base import UTCDateTime, utcnow


class StatCell(db.Model):
    """One count: ``indicator`` (and its ``key``, a bracket or a section, "" otherwise) for the
    requests or needs of ``month`` (first day, Paris time) in ``region_code`` on ``theme_id``
    (0 and "" when the région or the theme is unknown)."""

    __tablename__ = "stat_cells"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(Date)
    region_code: Mapped[str] = mapped_column(String(3), default="")
    theme_id: Mapped[int] = mapped_column(default=0)
    indicator: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(10), default="")
    value: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        UniqueConstraint("month", "region_code", "theme_id", "indicator", "key"),
        # The page reads one indicator over a period, summed over régions and themes.
        Index("ix_stat_cells_indicator_month", "indicator", "month", "region_code", "theme_id", "key", "value"),
    )


class StatRefresh(db.Model):
    """When the aggregates were last computed, and from how many rows (shown under the page)."""

    __tablename__ = "stat_refreshes"

    id: Mapped[int] = mapped_column(primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    requests: Mapped[int] = mapped_column(default=0)
    needs: Mapped[int] = mapped_column(default=0)
    cells: Mapped[int] = mapped_column(default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)


class PartnerReport(db.Model):
    """A partner's periodic report (issue 15): for an institution (all its antennes) or one
    antenne, over a quarter (``2026-Q3``). Kept in the database, like exports, so any web
    process serves it; rebuilding a period replaces its file."""

    __tablename__ = "partner_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    antenne_id: Mapped[int | None] = mapped_column(ForeignKey("antennes.id"), index=True)
    # "institution:<id>" or "antenne:<id>": one report per scope and period.
    scope: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))
    filename: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    matches: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    institution: Mapped[Institution] = relationship()
    antenne: Mapped[Antenne | None] = relationship()

    __table_args__ = (UniqueConstraint("scope", "period"),)

    def __str__(self) -> str:
        return self.filename
