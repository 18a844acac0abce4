"""The transaction convention: what waits for the commit runs once it happens, and never for a
unit (or a savepoint) that rolled back."""

from __future__ import annotations

import pytest

from app.extensions import db as _db
from app.services.transactions import after_commit, collected, transaction


def test_a_callback_runs_after_the_commit_and_never_after_a_rollback(db):
    ran: list[str] = []
    with transaction():
        after_commit(lambda: ran.append("committed"))
        assert ran == []  # not before the commit
    assert ran == ["committed"]
    with pytest.raises(RuntimeError), transaction():
        after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("refus")
    with transaction():
        pass
    assert ran == ["committed"]


def test_a_savepoint_neither_runs_nor_keeps_what_it_rolled_back(db):
    ran: list[str] = []
    with transaction():
        after_commit(lambda: ran.append("before"))
        with _db.session.begin_nested():
            after_commit(lambda: ran.append("kept savepoint"))
        assert ran == []  # releasing a savepoint is not the commit
        try:
            with _db.session.begin_nested():
                after_commit(lambda: ran.append("dropped savepoint"))
                raise ValueError("ligne refusée")
        except ValueError:
            pass
    assert ran == ["before", "kept savepoint"]


def test_a_collection_forgotten_with_its_savepoint_starts_afresh(db):
    handed: list[list[int]] = []
    with transaction():
        try:
            with _db.session.begin_nested():
                collected("test", handed.append).append(1)
                raise ValueError("ligne refusée")
        except ValueError:
            pass
        collected("test", handed.append).append(2)
    assert handed == [[2]]
