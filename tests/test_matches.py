"""Match statuses: the transition table, the dates it stamps, the need's derived status, and
the row lock that keeps two clicks from racing (services.matches)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from app.models import Match, Need
from app.models.requests import MATCH_STATUSES
from app.services.errors import ServiceError
from app.services.requests.matches import (
    TRANSITIONS,
    allowed_transitions,
    change_match_status,
    derive_need_status,
)
from tests.factories import make_need

ALLOWED = [(current, target) for current, targets in TRANSITIONS.items() for target in targets]
REFUSED = [
    (current, target)
    for current in MATCH_STATUSES
    for target in MATCH_STATUSES
    if target != current and target not in TRANSITIONS[current]
]


def test_the_table_is_the_reference_one_plus_the_undo_of_a_closure():
    assert TRANSITIONS == {
        "quo": ("taking_care", "not_for_me"),
        "not_for_me": ("quo",),
        "taking_care": ("done", "done_no_help", "done_not_reachable", "quo"),
        "done": ("taking_care", "quo"),
        "done_no_help": ("taking_care", "quo"),
        "done_not_reachable": ("taking_care", "quo"),
    }
    assert set(TRANSITIONS) == set(MATCH_STATUSES)


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_every_allowed_transition_works(db, current, target):
    need = make_need(1, statuses=(current,))
    match = need.matches[0]
    assert target in allowed_transitions(match)
    change_match_status(match, target)
    db.session.expire_all()
    assert db.session.get(Match, match.id).status == target
    assert db.session.get(Need, need.id).status == target  # its only match


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_every_other_transition_is_refused_in_french(db, current, target):
    need = make_need(1, statuses=(current,))
    match = need.matches[0]
    with pytest.raises(ServiceError, match=r"^Impossible de passer du statut « .+ » au statut « .+ »\.$"):
        change_match_status(match, target)
    db.session.expire_all()
    assert db.session.get(Match, match.id).status == current


@pytest.mark.parametrize("bad", ["", "closed", "DONE", "quo "])
def test_an_unknown_status_is_refused_in_french(db, bad):
    match = make_need(1).matches[0]
    with pytest.raises(ServiceError, match=r"^Statut inconnu : « .* »\.$"):
        change_match_status(match, bad)


@pytest.mark.parametrize("status", MATCH_STATUSES)
def test_asking_for_the_current_status_again_changes_nothing(db, status):
    need = make_need(1, statuses=(status,))
    match = need.matches[0]
    before = (match.taken_care_at, match.closed_at, match.updated_at)
    change_match_status(match, status)
    db.session.expire_all()
    again = db.session.get(Match, match.id)
    assert (again.status, again.taken_care_at, again.closed_at, again.updated_at) == (status, *before)


def test_dates_follow_the_expert_through_a_whole_story(db):
    match = make_need(1).matches[0]
    assert (match.taken_care_at, match.closed_at) == (None, None)

    change_match_status(match, "taking_care")
    taken = match.taken_care_at
    assert taken is not None and match.closed_at is None

    change_match_status(match, "done")
    assert match.taken_care_at == taken  # the first time is what the statistics measure
    closed = match.closed_at
    assert closed is not None and closed >= taken

    change_match_status(match, "taking_care")  # « Annuler la clôture »
    assert match.taken_care_at == taken and match.closed_at is None

    change_match_status(match, "done_not_reachable")
    assert match.taken_care_at == taken and match.closed_at is not None

    change_match_status(match, "quo")
    assert (match.taken_care_at, match.closed_at) == (None, None)


def test_a_refusal_closes_without_taking_care_and_its_undo_reopens(db):
    match = make_need(1).matches[0]
    change_match_status(match, "not_for_me")
    assert match.taken_care_at is None and match.closed_at is not None
    change_match_status(match, "quo")
    assert (match.taken_care_at, match.closed_at) == (None, None)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("quo", "quo"), "quo"),
        (("quo", "not_for_me"), "quo"),
        (("not_for_me", "not_for_me", "not_for_me"), "not_for_me"),
        (("taking_care", "quo", "not_for_me"), "taking_care"),
        (("done_not_reachable", "taking_care"), "done_not_reachable"),
        (("done_no_help", "done_not_reachable", "taking_care"), "done_no_help"),
        (("done", "done_no_help", "not_for_me"), "done"),
        (("not_for_me", "done"), "done"),
        ((), "not_for_me"),  # nobody left to answer: the refused basket
    ],
)
def test_the_need_status_is_the_first_that_applies(statuses, expected):
    assert derive_need_status(statuses) == expected


@pytest.mark.parametrize(
    ("statuses", "match_index", "target", "expected"),
    [
        (("quo", "quo"), 0, "taking_care", "taking_care"),
        (("quo", "not_for_me"), 0, "not_for_me", "not_for_me"),
        (("taking_care", "quo"), 1, "not_for_me", "taking_care"),
        (("taking_care", "done_no_help"), 0, "done", "done"),
        (("done", "taking_care"), 0, "taking_care", "taking_care"),
        (("done", "done_not_reachable", "quo"), 0, "quo", "done_not_reachable"),
        (("not_for_me", "not_for_me"), 1, "quo", "quo"),
    ],
)
def test_each_change_recomputes_the_need(db, statuses, match_index, target, expected):
    need = make_need(len(statuses), statuses=statuses)
    change_match_status(need.matches[match_index], target)
    db.session.expire_all()
    assert db.session.get(Need, need.id).status == expected


def test_the_need_is_recomputed_from_the_database_not_from_a_stale_copy(db):
    need = make_need(2)
    first, second = need.matches
    # Another expert answers through another connection while this session holds old copies.
    with db.engine.begin() as other:
        other.execute(text("UPDATE matches SET status = 'taking_care' WHERE id = :id"), {"id": second.id})
    change_match_status(first, "not_for_me")
    assert db.session.get(Need, need.id).status == "taking_care"


def test_a_change_is_journaled_with_its_actor(db):
    from app.services.audit import acting_as, history_for

    match = make_need(1).matches[0]
    with acting_as("expert test (lien)"):
        change_match_status(match, "taking_care")
    event = history_for(match)[0]
    assert event.actor == "expert test (lien)"
    assert event.changes["status"] == ["quo", "taking_care"]


def test_the_match_row_is_locked_while_it_changes(db):
    """A second click waits for the first: with the row held by another transaction, the change
    cannot take its lock (and gives up at once here instead of waiting)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks")
    match = make_need(1).matches[0]
    with db.engine.connect() as other:
        other.execute(select(Match.id).where(Match.id == match.id).with_for_update())
        db.session.execute(text("SET LOCAL lock_timeout = '1ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            change_match_status(match, "taking_care")
        db.session.rollback()
        other.rollback()
    change_match_status(match, "taking_care")
    assert match.status == "taking_care"
