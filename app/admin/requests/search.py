"""Search of the request lists: the hook where full-text search plugs in (services/search.py)."""

from __future__ import annotations


class FullTextSearchMixin:
    """For now, Flask-Admin's own search over ``column_searchable_list``."""
