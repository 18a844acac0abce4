"""The catalog of themes and subjects a business can pick on the public form."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, and_, exists
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship

from app.extensions import db
from app.models.base import TimestampMixin, UTCDateTime


class Theme(TimestampMixin, db.Model):
    __tablename__ = "themes"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    subjects: Mapped[list[Subject]] = relationship(back_populates="theme", order_by="Subject.position")

    def __str__(self) -> str:
        return self.label


class Subject(TimestampMixin, db.Model):
    """An archived subject, or a subject of an archived theme, stays attached to past needs but
    is neither offered nor routed (:attr:`is_offered`, the one rule, in Python and in SQL)."""

    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    theme_id: Mapped[int] = mapped_column(ForeignKey("themes.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    theme: Mapped[Theme] = relationship(back_populates="subjects")

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @hybrid_property
    def is_offered(self) -> bool:
        """Offered on the form and routed: neither the subject nor its theme is archived."""
        return self.archived_at is None and (self.theme is None or self.theme.archived_at is None)

    @is_offered.inplace.expression
    @classmethod
    def _is_offered_expression(cls):
        # Its own alias of the themes, never correlated to a query that also reads themes.
        theme = aliased(Theme, name="offered_theme")
        offered_theme = exists().where(theme.id == cls.theme_id, theme.archived_at.is_(None)).correlate_except(theme)
        return and_(cls.archived_at.is_(None), offered_theme)

    def __str__(self) -> str:
        return self.label
