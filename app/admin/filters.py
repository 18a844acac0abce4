"""List filters and filter options shared by the back-office views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from sqlalchemy import false

from app.models.base import INTEGER_MAX


class LazyOptions:
    """Filter options read from the database each time the list renders.

    Flask-Admin computes filter options once, when the view is registered (outside any
    application context); this iterable defers the query to rendering time.
    """

    def __init__(self, load: Callable[[], list[tuple[str, str]]]) -> None:
        self.load = load

    def __iter__(self):
        return iter(self.load())

    def __bool__(self) -> bool:
        return True


class DeletedFilter(BaseSQLAFilter):
    """« Supprimé(e) : oui / non » on a ``deleted_at`` column."""

    def __init__(self, column: Any, name: str = "Supprimé(e)") -> None:
        super().__init__(column, name, options=(("non", "non"), ("oui", "oui")))

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        column = self.get_column(alias)
        return query.filter(column.is_not(None) if value == "oui" else column.is_(None))

    def operation(self) -> str:
        return "est"


class InSubqueryFilter(BaseSQLAFilter):
    """Keep rows whose ``column`` is in the ids ``subquery(value)`` selects (value: an integer id).

    Used for filters that cross a relationship (an expert's institution, its subjects) without
    adding joins that would duplicate rows.
    """

    def __init__(self, column: Any, name: str, subquery: Callable[[int], Any], options: Any) -> None:
        super().__init__(column, name, options=options)
        self.subquery = subquery

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        try:
            ident = int(value)
        except (TypeError, ValueError):
            return query.filter(false())
        if not 0 < ident <= INTEGER_MAX:  # beyond an INTEGER column: matches nothing, no error
            return query.filter(false())
        return query.filter(self.get_column(alias).in_(self.subquery(ident)))

    def operation(self) -> str:
        return "est"
