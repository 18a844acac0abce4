"""The filters of the needs and matches lists (région, département, institution, antenne,
theme, subject, status, dates, « sans preneur depuis N jours », « suivis par moi »).

Every filter that crosses a relationship keeps the rows whose id is in a subquery instead of
joining: a join through the matches would list a need once per expert. Options are read
when the list renders (``LazyOptions``), so a new institution shows without a restart.
A value a filter cannot read (« abc » days, a malformed date) is refused by Flask-Admin with
a French message, the list showing unfiltered: never a 500, never a silent empty list.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_admin.contrib.sqla.filters import (
    BaseSQLAFilter,
    DateTimeBetweenFilter,
    DateTimeGreaterFilter,
    DateTimeSmallerFilter,
    FilterEqual,
    IntEqualFilter,
)
from flask_login import current_user
from sqlalchemy import select

from app import policy
from app.admin.addressbook import institution_options, subject_options
from app.admin.filters import InSubqueryFilter, LazyOptions
from app.dates import PARIS
from app.extensions import db
from app.models import (
    MATCH_STATUS_LABELS,
    NEED_STATUS_LABELS,
    Antenne,
    Commune,
    Departement,
    Expert,
    Facility,
    Institution,
    Match,
    Need,
    NeedStar,
    Region,
    Subject,
    Theme,
)
from app.models.base import INTEGER_MAX, utcnow
from app.models.requests import NeedStatus

# « Sans preneur depuis N jours »: beyond ten years the question has no meaning (and a huge
# number would overflow the date arithmetic).
MAX_NO_TAKER_DAYS = 3650
_CODE = re.compile(r"^[0-9A-Za-z]{1,3}$")
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


# ---------------------------------------------------------------- options


def region_options() -> list[tuple[str, str]]:
    return [(code, name) for code, name in db.session.execute(select(Region.code, Region.name).order_by(Region.name))]


def departement_options() -> list[tuple[str, str]]:
    return [
        (code, f"{code} — {name}")
        for code, name in db.session.execute(select(Departement.code, Departement.name).order_by(Departement.code))
    ]


def antenne_options() -> list[tuple[str, str]]:
    # Through the policy: a referent's filter offers their own antennes only.
    query = (
        select(Antenne.id, Antenne.name, Institution.name)
        .join(Institution, Antenne.institution_id == Institution.id)
        .order_by(Institution.name, Antenne.name)
    )
    return [
        (str(ident), f"{name} — {institution}")
        for ident, name, institution in db.session.execute(policy.scope_query(current_user, Antenne, query))
    ]


def theme_options() -> list[tuple[str, str]]:
    return [
        (str(ident), label)
        for ident, label in db.session.execute(select(Theme.id, Theme.label).order_by(Theme.position, Theme.id))
    ]


# ---------------------------------------------------------------- filter kinds


def _identifier(value: str) -> int:
    """A row id typed in a URL: an integer the database can hold, or a refusal (an out-of-range
    number must not reach SQLite, which raises on it)."""
    ident = int((value or "").strip())
    if not 0 < ident <= INTEGER_MAX:
        raise ValueError(value)
    return ident


class IdEqualFilter(IntEqualFilter):
    """``column = id`` on an integer column (a plain FilterEqual compares an integer with text,
    which PostgreSQL refuses)."""

    def clean(self, value: str) -> int:
        return _identifier(value)


class IdInSubqueryFilter(InSubqueryFilter):
    """Rows whose ``column`` is in the ids ``subquery(id)`` selects, the id checked first."""

    def clean(self, value: str) -> int:
        return _identifier(value)


class CodeInSubqueryFilter(BaseSQLAFilter):
    """Like ``InSubqueryFilter``, for a territory code (« 2A », « 084 »: not integers)."""

    def __init__(self, column: Any, name: str, subquery: Any, options: Any) -> None:
        super().__init__(column, name, options=options)
        self.subquery = subquery

    def clean(self, value: str) -> str:
        value = (value or "").strip()
        if not _CODE.match(value):
            raise ValueError(value)
        return value.upper()

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias).in_(self.subquery(value)))

    def operation(self) -> str:
        return "est"


def _paris_datetime(value: str) -> datetime:
    """What staff type (the date picker's « 2026-11-25 09:00:00 », or a bare date) is Paris time."""
    value = (value or "").strip()
    for fmt in DATE_FORMATS:
        try:
            local = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return local.replace(tzinfo=PARIS).astimezone(UTC)
    raise ValueError(value)


class ParisDateTimeAfterFilter(DateTimeGreaterFilter):
    """Flask-Admin's « after » date filter, the typed time read as Paris time (Flask-Admin reads
    it as the naive UTC the database stores, an hour or two off for staff)."""

    def clean(self, value: str) -> datetime:
        return _paris_datetime(value)

    def apply(self, query: Any, value: datetime, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias) >= value)

    def operation(self) -> str:
        return "après le"


class ParisDateTimeBeforeFilter(DateTimeSmallerFilter):
    def clean(self, value: str) -> datetime:
        return _paris_datetime(value)

    def operation(self) -> str:
        return "avant le"


class ParisDateTimeBetweenFilter(DateTimeBetweenFilter):
    """« Date entre A et B » (the picker sends « A to B »), both ends included, Paris time."""

    def clean(self, value: str) -> tuple[datetime, datetime]:
        parts = (value or "").split(" to ")
        if len(parts) != 2:
            raise ValueError(value)
        start, end = (_paris_datetime(part) for part in parts)
        if start > end:
            raise ValueError(value)
        return start, end

    def validate(self, value: str) -> bool:
        try:
            self.clean(value)
        except ValueError:
            return False
        return True

    def operation(self) -> str:
        return "entre"


class NoTakerSinceFilter(BaseSQLAFilter):
    """Needs still waiting (status ``quo``: no expert took them) created more than N days ago:
    the ones staff should chase by phone (the home page counts them)."""

    def __init__(self, name: str = "Sans preneur depuis") -> None:
        super().__init__(Need.created_at, name)

    def clean(self, value: str) -> int:
        days = int((value or "").strip())
        if not 0 <= days <= MAX_NO_TAKER_DAYS:
            raise ValueError(value)
        return days

    def apply(self, query: Any, value: int, alias: Any = None) -> Any:
        return query.filter(Need.status == NeedStatus.QUO, self.get_column(alias) < utcnow() - timedelta(days=value))

    def operation(self) -> str:
        return "plus de (jours)"


class YesOnlyFilter(BaseSQLAFilter):
    """A filter with the single option « oui » on the needs' ids; subclasses say which ids."""

    def __init__(self, name: str) -> None:
        super().__init__(Need.id, name, options=(("1", "oui"),))

    def clean(self, value: str) -> bool:
        if value not in ("1", "oui"):
            raise ValueError(value)
        return True

    def ids(self) -> Any:
        raise NotImplementedError

    def apply(self, query: Any, value: bool, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias).in_(self.ids()))

    def operation(self) -> str:
        return "oui"


class TakenInChargeFilter(YesOnlyFilter):
    """Needs an expert took in charge (a match with a taking-in-charge date), whatever came after:
    the staff home's funnel counts them (issue 15)."""

    def __init__(self, name: str = "Pris en charge") -> None:
        super().__init__(name)

    def ids(self) -> Any:
        return select(Match.need_id).where(Match.taken_care_at.is_not(None))


class StarredByMeFilter(YesOnlyFilter):
    """The needs the logged-in staff member follows (« Suivre » on the need's page)."""

    def __init__(self, name: str = "Suivis par moi") -> None:
        super().__init__(name)

    def ids(self) -> Any:
        return select(NeedStar.need_id).where(NeedStar.user_id == getattr(current_user, "id", None))


# ---------------------------------------------------------------- subqueries


def _facilities_in(column: Any, code: str):
    return select(Facility.id).where(Facility.commune_code.in_(select(Commune.code).where(column == code)))


def _experts_of_institution(ident: int):
    return select(Expert.id).join(Antenne, Expert.antenne_id == Antenne.id).where(Antenne.institution_id == ident)


def _experts_of_antenne(ident: int):
    return select(Expert.id).where(Expert.antenne_id == ident)


def _needs_with_experts(experts) -> Any:
    return select(Match.need_id).where(Match.expert_id.in_(experts))


def _subjects_of_theme(ident: int):
    return select(Subject.id).where(Subject.theme_id == ident)


def _needs_where(*conditions: Any):
    return select(Need.id).where(*conditions)


def need_filters() -> list:
    return [
        FilterEqual(Need.status, "Statut", options=list(NEED_STATUS_LABELS.items())),
        NoTakerSinceFilter(),
        StarredByMeFilter(),
        CodeInSubqueryFilter(
            Need.facility_id,
            "Région",
            lambda code: _facilities_in(Commune.region_code, code),
            options=LazyOptions(region_options),
        ),
        CodeInSubqueryFilter(
            Need.facility_id,
            "Département",
            lambda code: _facilities_in(Commune.departement_code, code),
            options=LazyOptions(departement_options),
        ),
        IdInSubqueryFilter(
            Need.id,
            "Institution",
            lambda ident: _needs_with_experts(_experts_of_institution(ident)),
            options=LazyOptions(institution_options),
        ),
        IdInSubqueryFilter(
            Need.id,
            "Antenne",
            lambda ident: _needs_with_experts(_experts_of_antenne(ident)),
            options=LazyOptions(antenne_options),
        ),
        IdInSubqueryFilter(Need.subject_id, "Thème", _subjects_of_theme, options=LazyOptions(theme_options)),
        IdEqualFilter(Need.subject_id, "Sujet", options=LazyOptions(subject_options)),
        ParisDateTimeAfterFilter(Need.created_at, "Date"),
        ParisDateTimeBeforeFilter(Need.created_at, "Date"),
        ParisDateTimeBetweenFilter(Need.created_at, "Date"),
        # Last, so that the lists' saved addresses (filters are numbered) keep their meaning.
        TakenInChargeFilter(),
    ]


def match_filters() -> list:
    return [
        FilterEqual(Match.status, "Statut", options=list(MATCH_STATUS_LABELS.items())),
        CodeInSubqueryFilter(
            Match.need_id,
            "Région",
            lambda code: _needs_where(Need.facility_id.in_(_facilities_in(Commune.region_code, code))),
            options=LazyOptions(region_options),
        ),
        CodeInSubqueryFilter(
            Match.need_id,
            "Département",
            lambda code: _needs_where(Need.facility_id.in_(_facilities_in(Commune.departement_code, code))),
            options=LazyOptions(departement_options),
        ),
        IdInSubqueryFilter(
            Match.expert_id, "Institution", _experts_of_institution, options=LazyOptions(institution_options)
        ),
        IdInSubqueryFilter(Match.expert_id, "Antenne", _experts_of_antenne, options=LazyOptions(antenne_options)),
        IdInSubqueryFilter(
            Match.need_id,
            "Thème",
            lambda ident: _needs_where(Need.subject_id.in_(_subjects_of_theme(ident))),
            options=LazyOptions(theme_options),
        ),
        IdInSubqueryFilter(
            Match.need_id,
            "Sujet",
            lambda ident: _needs_where(Need.subject_id == ident),
            options=LazyOptions(subject_options),
        ),
        ParisDateTimeAfterFilter(Match.created_at, "Date"),
        ParisDateTimeBeforeFilter(Match.created_at, "Date"),
        ParisDateTimeBetweenFilter(Match.created_at, "Date"),
        ParisDateTimeAfterFilter(Match.taken_care_at, "Prise en charge"),
        ParisDateTimeBeforeFilter(Match.taken_care_at, "Prise en charge"),
    ]
