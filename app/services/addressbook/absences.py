"""Expert absences (holidays, leave), as staff and the other experts of a need read them."""

from __future__ import annotations

from datetime import date

from app.models import Expert


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def absence_text(expert: Expert, today: date | None = None) -> str | None:
    """« Absent jusqu'au 12/12/2026 », « Absent du … au … », or None when no absence is current
    or coming: a past absence says nothing."""
    today = today or date.today()
    start, end = expert.absent_from, expert.absent_until
    if end is not None and end < today:
        return None
    if start is None and end is None:
        return None
    if end is None:
        return f"Absent à partir du {_day(start)}" if start > today else "Absent"
    if start is None or start <= today:
        return f"Absent jusqu'au {_day(end)}"
    return f"Absent du {_day(start)} au {_day(end)}"


def is_absent(expert: Expert, today: date) -> bool:
    """Away on ``today`` (an absence without an end lasts until the expert says otherwise)."""
    start, end = expert.absent_from, expert.absent_until
    if start is None and end is None:
        return False
    return (start is None or start <= today) and (end is None or today <= end)
