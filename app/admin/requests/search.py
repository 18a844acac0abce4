"""The search box of the request lists, answered by full-text search (services/search.py).

Flask-Admin's own search ORs an ``ILIKE '%term%'`` over each column of
``column_searchable_list`` through outer joins: a sequential scan of every joined table at
national volume, blind to accents. The mixin replaces it with one condition on the rows'
search documents (a GIN index on PostgreSQL), applied to the list and to its count alike, so
it combines with the filters, the tabs, the sorting and the paging like any filter.
"""

from __future__ import annotations

from typing import Any

from app.models import Match, Need, Solicitation
from app.services.search import search_condition

PLACEHOLDERS = {
    Need: "Entreprise, SIRET, contact, email, téléphone, description",
    Solicitation: "Nom, entreprise, SIRET, email, téléphone, description",
    Match: "Entreprise, SIRET, contact, expert, description",
}


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
