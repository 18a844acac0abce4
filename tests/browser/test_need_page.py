"""The need page in a real Chromium: staff logged in through /connexion add an expert from the
suggestions, hand a match over, follow the need and resend an email; the controls come in a
sane keyboard order and what the page adds has no axe-core violation."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import Match, NeedStar, OutboundEmail
from tests.browser import axe_violations
from tests.browser import log_in as _log_in
from tests.factories import ExpertFactory, make_need

pytestmark = pytest.mark.browser


def _focus_path(page, stop: str, limit: int = 250) -> list[str]:
    """What Tab reaches, in order, from the top of the page until an element whose label is ``stop``."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    path = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        label = page.evaluate(
            """() => {
                const el = document.activeElement;
                return el.id ? '#' + el.id : (el.innerText || el.value || el.tagName).trim();
            }"""
        )
        path.append(label)
        if label == stop:
            return path
    raise AssertionError(f"« {stop} » n'est pas atteignable au clavier : {path}")


def test_staff_follow_a_need_with_the_keyboard_and_the_mouse(page, live_server, admin_user, db):
    need = make_need(2, statuses=("taking_care", "not_for_me"))
    old = need.matches[0]
    old_id = old.id
    newcomer = ExpertFactory(full_name="Sacha Leroy")
    successor = ExpertFactory(full_name="Noa Girard")
    _log_in(page, live_server, admin_user.email)
    url = f"{live_server}/admin/need/details/?id={need.id}"
    page.goto(url)
    assert axe_violations(page) == []

    # Keyboard order follows the page: follow, hand over, add, note, write, then the timeline.
    path = _focus_path(page, "#comment-body")
    order = [
        path.index("☆ Suivre ce besoin"),
        path.index(f"#reassign-{old_id}"),
        path.index("#add-expert"),
        path.index("#note-body"),
        path.index("#comment-body"),
    ]
    assert order == sorted(order), path

    # Add an expert: the suggestions come from the annuaire as one types.
    field = page.locator("#add-expert")
    field.focus()
    page.keyboard.type("Sacha")
    option = page.locator("#expert-suggestions option").first
    option.wait_for(state="attached")
    value = option.get_attribute("value")
    assert value == f"Sacha Leroy <{newcomer.email}> #{newcomer.id}"
    field.fill(value)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Sacha Leroy a reçu le besoin" in page.locator(".alert").first.inner_text()
    assert "Sacha Leroy" in page.locator("#mises-en-relation").inner_text()

    # Hand the taken match over to another expert, typing the address as without JavaScript.
    page.fill(f"#reassign-{old_id}", successor.email)
    with page.expect_navigation():
        page.locator(f"#reassign-{old_id}").press("Enter")
    assert "Besoin réattribué" in page.locator(".alert").first.inner_text()
    table = page.locator("#mises-en-relation").inner_text()
    assert "Noa Girard" in table

    # Follow the need.
    with page.expect_navigation():
        page.get_by_role("button", name="Suivre ce besoin").click()
    assert "Vous suivez ce besoin." in page.locator("#suivi").inner_text()

    # Resend the old expert's farewell from the timeline.
    farewell = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{old_id}:reassigned"))
    button = page.get_by_role("button", name=re.compile(rf"Renvoyer le courriel « {re.escape(farewell.subject)} »"))
    with page.expect_navigation():
        button.click()
    assert "Courriel remis en file d'envoi." in page.locator(".alert").first.inner_text()
    assert axe_violations(page) == []

    db.session.expire_all()
    assert db.session.get(Match, old_id) is None
    experts = {m.expert_id for m in db.session.scalars(select(Match).where(Match.need_id == need.id))}
    assert {newcomer.id, successor.id} <= experts
    assert db.session.scalar(select(NeedStar).where(NeedStar.need_id == need.id)) is not None
    assert (
        db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == f"match:{old_id}:reassigned:renvoi:1"))
        is not None
    )
