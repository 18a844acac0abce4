"""The list hooks of the request views: full-text search (services/requests/search.py) and a capped count.

Flask-Admin's own search ORs an ``ILIKE '%term%'`` over each column of
``column_searchable_list`` through outer joins: a sequential scan of every joined table at
national volume, blind to accents. The mixin replaces it with one condition on the rows'
search documents (a GIN index on PostgreSQL), applied to the list and to its count alike, so
it combines with the filters, the tabs, the sorting and the paging like any filter.

Flask-Admin also counts every row the list matches, on every page: on 400,000 needs or a
million matches that count costs more than the page itself. The count stops at
``COUNT_CAP``: below it the list shows the exact number; above it, « plus de 10 000 », which
is true, and what staff need to know before narrowing the list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Query

from app.models import Match, Need, Solicitation
from app.services.requests.search import search_condition

# 200 pages of 50: nobody pages further; sorting the other way reaches the oldest rows.
COUNT_CAP = 10_000

PLACEHOLDERS = {
    Need: "Entreprise, SIRET, contact, email, téléphone, description",
    Solicitation: "Nom, entreprise, SIRET, email, téléphone, description",
    Match: "Entreprise, SIRET, contact, expert, description",
}


class CappedCount(int):
    """More rows than the cap: pages as ``COUNT_CAP + 1`` rows would, reads « plus de 10 000 »."""

    def __str__(self) -> str:
        return f"plus de {COUNT_CAP:,}".replace(",", "\u202f")

    __html__ = __str__


class CappedCountQuery(Query):
    """Flask-Admin's count query (``SELECT count(*) FROM … WHERE …``), counted up to the cap:
    ``SELECT count(*) FROM (SELECT 1 FROM … WHERE … LIMIT cap + 1)`` reads at most cap + 1
    rows whatever the table's size."""

    def scalar(self) -> int:
        rows = self.with_entities(literal_column("1")).limit(COUNT_CAP + 1).subquery()
        found = self.session.execute(select(func.count()).select_from(rows)).scalar_one()
        return CappedCount(COUNT_CAP + 1) if found > COUNT_CAP else found


class FullTextSearchMixin:
    """Mixed into a request view before its ModelView base; ``column_searchable_list`` is unused."""

    model: type

    def init_search(self) -> bool:
        self._search_fields = []
        return True

    def search_placeholder(self) -> str | None:
        return PLACEHOLDERS.get(self.model, "Rechercher")

    def _apply_search(self, query: Any, count_query: Any, joins: dict, count_joins: dict, search: str):
        condition = search_condition(self.model, search)
        if condition is None:
            return query, count_query, joins, count_joins
        query = query.filter(condition)
        if count_query is not None:
            count_query = count_query.filter(condition)
        return query, count_query, joins, count_joins

    def get_count_query(self) -> Any:
        query = super().get_count_query()  # type: ignore[misc]
        # The same query (scope, tab and filters still apply to it), counted up to the cap.
        capped = CappedCountQuery.__new__(CappedCountQuery)
        capped.__dict__.update(query.__dict__)
        return capped
