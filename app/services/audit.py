"""The audit trail, written for every change of a tracked model whatever its path.

A session listener records the changes rather than each caller, so an admin form, an
import, the CLI and a job cannot forget it. The actor is whoever the current context says: a
label such as ``cli`` or ``import`` set with :func:`acting_as`, else what the web interface
says of the request (the logged-in person, registered by ``app/auth`` with
:func:`resolve_request_actor_with`: this module reads no request state), else « système ».
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from flask import Flask
from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import (
    Antenne,
    ApiKey,
    AuditEvent,
    Comment,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Landing,
    LandingSubject,
    Match,
    Need,
    OfferExpectation,
    Partner,
    RoutingFilter,
    RoutingFilterSubject,
    Solicitation,
    Subject,
    SubjectQuestion,
    Theme,
    User,
    Zone,
)
from app.models.base import utcnow

_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)

# Columns never copied into the trail: secrets, and bookkeeping that changes on every write
# (the search document is derived from the columns that are recorded).
_SKIPPED = {"password_hash", "key_hash", "updated_at", "created_at", "search_document"}


def tracked_models() -> tuple[type, ...]:
    return (
        Institution,
        Antenne,
        Expert,
        InstitutionSubject,
        ExpertSubject,
        Zone,
        Theme,
        Subject,
        User,
        Solicitation,
        Need,
        Match,
        Comment,
        RoutingFilter,
        RoutingFilterSubject,
        SubjectQuestion,
        OfferExpectation,
        Partner,
        Landing,
        LandingSubject,
        ApiKey,
    )


@contextmanager
def acting_as(label: str, user_id: int | None = None) -> Iterator[None]:
    """Attribute the changes made inside the block to ``label`` (and the user, if any)."""
    token = _actor.set((user_id, label))
    try:
        yield
    finally:
        _actor.reset(token)


def actor_label(user: Any | None, user_id: int | None = None) -> str:
    """How the audit trail names a person who logged in: their address, else their number."""
    if user is not None and getattr(user, "email", None):
        return user.email
    return f"utilisateur #{user_id if user_id is not None else getattr(user, 'id', '?')}"


Actor = tuple[int | None, str]
_request_actor: Callable[[], Actor | None] | None = None


def resolve_request_actor_with(resolver: Callable[[], Actor | None]) -> None:
    """Let the web interface say who acts in the current request (``None`` outside one)."""
    global _request_actor
    _request_actor = resolver


def current_actor() -> Actor:
    explicit = _actor.get()
    if explicit is not None:
        return explicit
    found = _request_actor() if _request_actor is not None else None
    return found if found is not None else (None, "système")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _column_changes(obj: Any, *, creating: bool) -> dict[str, list[Any]]:
    state = inspect(obj)
    changes: dict[str, list[Any]] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in _SKIPPED or key == "id":
            continue
        history = state.attrs[key].history
        if creating:
            value = getattr(obj, key)
            if value is not None:
                changes[key] = [None, _plain(value)]
        elif history.has_changes():
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if old != new:
                changes[key] = [_plain(old), _plain(new)]
    return changes


def _after_flush(session: Session, _flush_context: Any) -> None:
    models = tracked_models()
    rows: list[dict[str, Any]] = []
    user_id, label = current_actor()

    def add(obj: Any, action: str, changes: dict[str, Any]) -> None:
        rows.append(
            {
                "created_at": utcnow(),
                "user_id": user_id,
                "actor": label[:200],
                "action": action,
                "object_type": type(obj).__name__,
                "object_id": getattr(obj, "id", None),
                "changes": changes,
            }
        )

    for obj in session.new:
        if isinstance(obj, models):
            add(obj, "create", _column_changes(obj, creating=True))
    for obj in session.dirty:
        if isinstance(obj, models) and session.is_modified(obj, include_collections=False):
            changes = _column_changes(obj, creating=False)
            if changes:
                action = "delete" if "deleted_at" in changes and changes["deleted_at"][1] else "update"
                add(obj, action, changes)
    for obj in session.deleted:
        if isinstance(obj, models):
            add(obj, "delete", {})
    if rows:
        session.connection().execute(insert(AuditEvent.__table__), rows)


def init_app(app: Flask) -> None:
    # Listen on the Session class Flask-SQLAlchemy uses, once per process.
    session_cls = db.session.session_factory.class_
    if not event.contains(session_cls, "after_flush", _after_flush):
        event.listen(session_cls, "after_flush", _after_flush)


def history_for(obj: Any) -> list[Any]:
    """The trail of one record, newest first."""
    from sqlalchemy import select

    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == type(obj).__name__, AuditEvent.object_id == obj.id)
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        )
    )
