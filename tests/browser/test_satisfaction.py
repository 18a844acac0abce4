"""The satisfaction survey on a phone, with the keyboard only, and axe-clean."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import SatisfactionAnswer
from app.services.messaging.links import survey_token
from tests.browser import axe_violations
from tests.factories import make_helped_need

pytestmark = pytest.mark.browser


def test_a_business_answers_the_survey_on_a_phone_with_the_keyboard(page, live_server, db):
    need = make_helped_need()
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{live_server}/satisfaction/{survey_token(need.id)}?reponse=oui")
    assert axe_violations(page) == []
    assert page.locator("#contacted-0").is_checked()  # « Oui », from the email's button
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing overflows the phone

    page.locator("#contacted-0").focus()
    page.keyboard.press("Tab")  # to the next question (radio groups take one Tab stop)
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the first outcome
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the three other outcomes, into the comment
    page.keyboard.type("Rappelée le lendemain, très utile.")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Merci pour votre avis" in page.locator("h1").inner_text()
    assert axe_violations(page) == []

    db.session.expire_all()
    answer = db.session.scalar(select(SatisfactionAnswer).where(SatisfactionAnswer.need_id == need.id))
    assert (answer.contacted, answer.useful, answer.outcomes, answer.comment) == (
        True,
        True,
        ["discover"],
        "Rappelée le lendemain, très utile.",
    )
