"""What the models share: timestamps, soft deletion, aware UTC dates, and the bounds of ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeDecorator

from app.dates import as_utc, utcnow

__all__ = ["INTEGER_MAX", "SoftDeleteMixin", "TimestampMixin", "UTCDateTime", "days_before", "parse_pk", "utcnow"]

# PostgreSQL's INTEGER and BIGINT: a larger id in a URL or a form names no row, and must not
# reach the database (where it is an error, not an empty answer).
INTEGER_MAX = 2**31 - 1
BIGINTEGER_MAX = 2**63 - 1


class UTCDateTime(TypeDecorator):
    """``TIMESTAMP WITH TIME ZONE`` that always hands back an aware UTC datetime.

    PostgreSQL keeps the zone; SQLite (the embedded default) drops it and hands back naive
    values, which every reader then had to mend. Values written are converted to UTC (a naive
    one is taken as UTC).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        return as_utc(value)


class days_before(FunctionElement):
    """``days_before(column, n)``: the timestamp ``n`` days before a timestamp column.

    Date arithmetic on a column differs per database (PostgreSQL subtracts an interval, SQLite
    stores text): one expression the queries can compare with another column, in a form an
    index on that other column can answer.
    """

    type = DateTime(timezone=True)
    inherit_cache = True

    def __init__(self, column: Any, days: int) -> None:
        self.days = int(days)
        super().__init__(column)


@compiles(days_before)
def _days_before_postgresql(element: days_before, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"({compiler.process(column, **kw)} - make_interval(days => {element.days}))"


@compiles(days_before, "sqlite")
def _days_before_sqlite(element: days_before, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"datetime({compiler.process(column, **kw)}, '-{element.days} days')"


def parse_pk(model: type, value: Any) -> Any:
    """``value`` (from a URL or a form) as ``model``'s primary key, or ``None`` when it cannot
    name a row: a forged id is a 404 or an invalid choice, never a database error."""
    column = model.__mapper__.primary_key[0]
    try:
        ident = column.type.python_type(value)
    except (TypeError, ValueError, NotImplementedError):
        return None
    if isinstance(ident, int):
        limit = BIGINTEGER_MAX if isinstance(column.type, BigInteger) else INTEGER_MAX
        if not -limit <= ident <= limit:
            return None
    return ident


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class SoftDeleteMixin:
    """Rows that people reference stay in place; ``deleted_at`` hides them from routing and lists."""

    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
