"""Time in the service: aware UTC in code and in the database, Paris time for people.

One module, below the models and the services (it imports nothing of the app), so every layer
reads dates the same way. Columns hand back aware UTC datetimes on every database
(``models.base.UTCDateTime``: SQLite stores them without their zone); :func:`as_utc` is for
the values that come from elsewhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; a naive one is taken as UTC (how the service writes them)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def in_paris(value: datetime) -> datetime:
    """``value`` (aware, or naive UTC) in Paris time."""
    return as_utc(value).astimezone(PARIS)


def paris_text(value: datetime | None, pattern: str = "%d/%m/%Y %H:%M") -> str:
    """How people read a date: Paris time, day first; empty for none."""
    return "" if value is None else in_paris(value).strftime(pattern)


def paris_day_start(day: date) -> datetime:
    """Midnight of ``day`` in Paris, in UTC (for « since that day » queries)."""
    return datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)
