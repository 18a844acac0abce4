"""The one place that answers "may this user do that" and "which rows may this user see"
(decision 4). Every admin view asks it; a refusal is a 403.

For now only staff (``admin``) get into the back office; referents get their scoped
access in a later issue, through :func:`scope_query`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select


def can_access_backoffice(user: Any) -> bool:
    return bool(user and user.is_authenticated and getattr(user, "is_admin", False))


def can_access_view(user: Any, view: Any) -> bool:
    """May ``user`` open this back-office view at all (its ``referent_access`` says for referents)."""
    return can_access_backoffice(user)


def can_manage(user: Any, model: type) -> bool:
    """Staff manage every record of the back office."""
    return can_access_backoffice(user)


def scope_query(user: Any, model: type, query: Select) -> Select:
    """Restrict ``query`` to the rows ``user`` may see; staff see everything, others nothing."""
    if can_access_backoffice(user):
        return query
    return query.where(False)
