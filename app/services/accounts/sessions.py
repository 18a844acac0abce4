"""Server-side sessions: a logged-in browser is a row the server can end.

Flask's session is a signed cookie; on its own, a copy taken before « Se déconnecter » would keep
working until the idle or absolute limit. The cookie therefore carries a random token whose
hash names a ``UserSession`` row, and a request is logged in only while that row is open.
Logout ends it, the person may end any of theirs from « Mon compte », a password change ends the
others, and deactivating an account ends them all.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import User, UserSession
from app.models.base import utcnow
from app.services.errors import ServiceError

# ``last_seen_at`` is written at most this often (not on every request).
TOUCH_EVERY = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(user: User, *, ip_address: str | None, user_agent: str | None) -> str:
    """A new session for ``user``; returns the token for the cookie (never stored as such)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        UserSession(
            user_id=user.id,
            token_hash=_hash(token),
            created_at=now,
            last_seen_at=now,
            ip_address=(ip_address or "")[:45] or None,
            user_agent=(user_agent or "")[:300] or None,
        )
    )
    db.session.flush()
    return token


def open_row(token: object, user_id: int) -> UserSession | None:
    """The open session of ``user_id`` named by ``token``, or None (ended, unknown, another user's)."""
    if not isinstance(token, str) or not token or len(token) > 100:
        return None
    return db.session.scalar(
        select(UserSession).where(
            UserSession.token_hash == _hash(token),
            UserSession.user_id == user_id,
            UserSession.ended_at.is_(None),
        )
    )


def needs_touch(row: UserSession, now: datetime | None = None) -> bool:
    return (now or utcnow()) - row.last_seen_at >= TOUCH_EVERY


def touch(row: UserSession, now: datetime | None = None) -> None:
    row.last_seen_at = now or utcnow()
    db.session.flush()


def end_by_token(token: object, reason: str) -> None:
    """End the session named by ``token`` (logout, expiry): nothing when it is already ended."""
    if isinstance(token, str) and token:
        db.session.execute(
            update(UserSession)
            .where(UserSession.token_hash == _hash(token), UserSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        )


def end_all(user: User, reason: str, *, keep_token: str | None = None) -> int:
    """End every open session of ``user`` (but the one of ``keep_token``); returns how many."""
    query = update(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    if keep_token:
        query = query.where(UserSession.token_hash != _hash(keep_token))
    return db.session.execute(query.values(ended_at=utcnow(), end_reason=reason)).rowcount or 0


def open_sessions(user: User) -> list[UserSession]:
    """The person's open sessions, the most recently used first."""
    return list(
        db.session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def is_current(row: UserSession, token: object) -> bool:
    return isinstance(token, str) and row.token_hash == _hash(token)


def close_session(user: User, session_id: object) -> UserSession:
    """« Fermer » from « Mon compte »: only one of the person's own open sessions."""
    row = db.session.get(UserSession, session_id) if isinstance(session_id, int) else None
    if row is None or row.user_id != user.id:
        raise ServiceError("Cette session n'existe pas ou ne vous appartient pas.")
    if row.ended_at is not None:
        raise ServiceError("Cette session est déjà fermée.")
    row.ended_at = utcnow()
    row.end_reason = "closed"
    db.session.flush()
    return row
