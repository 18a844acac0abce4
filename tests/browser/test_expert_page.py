"""The expert's page in a real Chromium: answered with the keyboard alone, without JavaScript
needed, and with no axe-core violation in any of its states."""

from __future__ import annotations

import pytest

from app.extensions import db as _db
from app.models import Match, Need
from app.services.messaging.links import expert_token
from tests.browser import axe_violations
from tests.factories import make_need

pytestmark = pytest.mark.browser


@pytest.fixture
def expert_url(db, live_server):
    need = make_need(3, statuses=("quo", "taking_care", "not_for_me"))
    return need, f"{live_server}/expert/{expert_token(need.matches[0])}"


def _tab_to(page, label: str, limit: int = 60) -> None:
    """Press Tab until the button named ``label`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == label:
            return
    raise AssertionError(f"« {label} » n'est pas atteignable au clavier")


def _status(match_id: int) -> str:
    _db.session.expire_all()
    return _db.session.get(Match, match_id).status


def test_the_expert_answers_with_the_keyboard(page, expert_url):
    need, url = expert_url
    match_id = need.matches[0].id
    page.goto(url)
    assert page.locator("h1").inner_text() == "Recruter un ou plusieurs salariés"
    assert axe_violations(page) == []

    _tab_to(page, "Je prends en charge")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == url  # redirected back to the page
    assert "votre statut est maintenant « Prise en charge »" in page.locator(".fr-alert").inner_text()
    assert _status(match_id) == "taking_care"
    assert axe_violations(page) == []

    _tab_to(page, "Aide proposée")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _status(match_id) == "done"
    assert _db.session.get(Need, need.id).status == "done"
    assert page.get_by_role("button", name="Annuler la clôture").is_visible()
    assert axe_violations(page) == []


def test_the_page_works_without_javascript(browser, expert_url):
    need, url = expert_url
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(url)
        page.get_by_role("button", name="Ce n'est pas pour moi").click()
        page.wait_for_url(url)
        assert page.get_by_role("button", name="Annuler mon refus").is_visible()
        assert _status(need.matches[0].id) == "not_for_me"
    finally:
        context.close()


def test_the_refused_and_the_invalid_link_pages_are_accessible(page, expert_url):
    _need, url = expert_url
    page.goto(url)
    page.get_by_role("button", name="Ce n'est pas pour moi").click()
    page.wait_for_url(url)
    assert axe_violations(page) == []
    page.goto(url[:-4] + "abcd")
    assert page.locator("h1").inner_text() == "Ce lien n'est pas valide"
    assert axe_violations(page) == []


def test_the_page_fits_a_phone_screen(browser, expert_url):
    _need, url = expert_url
    context = browser.new_context(locale="fr-FR", viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert axe_violations(page) == []
    finally:
        context.close()
