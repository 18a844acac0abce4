"""One transaction convention: services flush, the outermost caller commits.

A service verb adds, changes and flushes rows in the caller's session; it never commits, so
verbs compose (staff sending a request routes, writes needs, matches and emails: one unit) and
a refusal anywhere undoes the whole unit. The outermost caller — a view, an admin action, a CLI
command, a job, a test — wraps its unit of work in :func:`transaction`.

What must happen only once a unit is committed (handing emails or an export to a job: the worker
must find the rows, and a rollback must start nothing) is registered with :func:`after_commit`.

A few services write on a session or connection of their own, by design, and say so: the
outbox's delivery (one outcome per message, whatever the batch does), an export's progress (the
page polling it must see it at once), and batch maintenance (one batch, one commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from app.extensions import db

log = logging.getLogger(__name__)

_CALLBACKS = "after_commit_callbacks"
_COLLECTED = "after_commit_collections"


@contextmanager
def transaction() -> Iterator[Session]:
    """The outermost caller's unit of work: commit what the verbs inside flushed, or roll it all back."""
    session = db.session
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def after_commit(callback: Callable[[], None], *, session: Session | None = None) -> None:
    """Run ``callback`` once the current transaction of ``session`` (the request's, by default)
    commits; never if it rolls back. A failing callback is logged: the unit is committed."""
    session = _actual(session)
    # Remember the innermost transaction (a savepoint, maybe): rolling it back forgets the callback.
    session.info.setdefault(_CALLBACKS, []).append((_current(session), callback))


def collected(key: str, on_commit: Callable[[list], None], *, session: Session | None = None) -> list:
    """A list that lives as long as the current transaction: whatever is appended to it is
    handed to ``on_commit`` once, after the commit (a rollback forgets it). The outbox collects
    the rows to hand to the delivery jobs this way, one hand-over per commit."""
    session = _actual(session)
    lists = session.info.setdefault(_COLLECTED, {})
    if key not in lists:
        items: list = []
        lists[key] = (_current(session), items)
        after_commit(lambda: on_commit(lists.pop(key, (None, []))[1]), session=session)
    return lists[key][1]


def _current(session: Session):
    """The innermost transaction, begun if need be: a rollback must find what to forget."""
    if not session.in_transaction():
        session.begin()
    return session.get_nested_transaction() or session.get_transaction()


def _actual(session) -> Session:
    """The Session itself (``db.session`` is its per-context registry)."""
    session = db.session if session is None else session
    return session() if isinstance(session, scoped_session) else session


def _run_callbacks(session: Session) -> None:
    # SQLAlchemy announces a savepoint's release as a commit too: only the outermost one counts.
    if session.in_nested_transaction():
        return
    for _registered_in, callback in session.info.pop(_CALLBACKS, []):
        try:
            callback()
        except Exception:
            log.exception("action après validation en échec : %s", getattr(callback, "__qualname__", callback))


def _within(transaction, ancestor) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _drop_callbacks(session: Session, rolled_back) -> None:
    """Forget what was registered inside the transaction or savepoint that rolled back."""
    if rolled_back.parent is None:
        session.info.pop(_CALLBACKS, None)
        session.info.pop(_COLLECTED, None)
        return
    kept = [(tx, cb) for tx, cb in session.info.get(_CALLBACKS, []) if not _within(tx, rolled_back)]
    session.info[_CALLBACKS] = kept
    # A list whose hand-over was forgotten with the savepoint starts afresh on its next use.
    lists = session.info.get(_COLLECTED, {})
    for key in [key for key, (tx, _items) in lists.items() if _within(tx, rolled_back)]:
        del lists[key]


def init_app(_app) -> None:
    session_cls = db.session.session_factory.class_
    if not event.contains(session_cls, "after_commit", _run_callbacks):
        event.listen(session_cls, "after_commit", _run_callbacks)
        event.listen(session_cls, "after_soft_rollback", _drop_callbacks)
