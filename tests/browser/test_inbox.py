"""The expert's inbox in a real Chromium: the tabs are reached and followed with the keyboard
alone, a need opens from its row, and no tab has an axe-core violation."""

from __future__ import annotations

import pytest

from app.services.messaging.links import inbox_token
from tests.browser import axe_violations
from tests.factories import add_match, make_need

pytestmark = pytest.mark.browser

TABS = ("À traiter (2)", "En cours (1)", "Clôturés (1)", "Refusés (1)", "Expirés (1)")


@pytest.fixture
def inbox_url(db, live_server):
    first = make_need(1).matches[0]
    expert = first.expert
    add_match(expert, "quo", days_ago=3, company="Menuiserie Bois")
    add_match(expert, "quo", days_ago=60, company="Vieille Forge")
    add_match(expert, "taking_care", days_ago=5, company="Garage Central")
    add_match(expert, "done", days_ago=8, company="Atelier Fermé")
    add_match(expert, "not_for_me", days_ago=2, company="Salon Coiffure")
    return f"{live_server}/mes-demandes/{inbox_token(expert)}"


def _focused_text(page) -> str:
    return page.evaluate("document.activeElement.textContent.replace(/\\s+/g, ' ').trim()")


def _tab_to(page, label: str, limit: int = 60) -> None:
    """Press Tab until the link named ``label`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused_text(page) == label:
            return
    raise AssertionError(f"« {label} » n'est pas atteignable au clavier")


def _current_tab(page) -> str:
    return page.locator('nav a[aria-current="page"]').inner_text().replace("\xa0", " ").strip()


def test_the_expert_walks_the_tabs_and_opens_a_need_with_the_keyboard(page, inbox_url):
    page.goto(inbox_url)
    assert page.locator("h1").inner_text() == "Mes demandes"
    assert _current_tab(page) == "À traiter (2)"
    assert axe_violations(page) == []

    for label, company in zip(
        TABS[1:], ("Garage Central", "Atelier Fermé", "Salon Coiffure", "Vieille Forge"), strict=True
    ):
        _tab_to(page, label)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert _current_tab(page) == label
        assert [row.split("\t")[1] for row in page.locator("tbody tr").all_inner_texts()] == [company]
        assert axe_violations(page) == []

    _tab_to(page, "À traiter (2)")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    companies = [row.split("\t")[1] for row in page.locator("tbody tr").all_inner_texts()]
    assert companies == ["Boulangerie Durand", "Menuiserie Bois"]  # newest first

    _tab_to(page, "Recruter un ou plusieurs salariés")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "Recruter un ou plusieurs salariés"
    assert page.get_by_role("button", name="Je prends en charge").is_visible()

    _tab_to(page, "Toutes mes demandes")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "Mes demandes"


def test_the_inbox_works_without_javascript_and_an_empty_tab_is_accessible(browser, inbox_url):
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(inbox_url)
        page.get_by_role("link", name="Clôturés (1)").click()
        page.wait_for_url(inbox_url + "?onglet=clotures")
        assert "Atelier Fermé" in page.locator("tbody").inner_text()
    finally:
        context.close()


def test_an_empty_tab_and_the_invalid_link_page_are_accessible(page, db, live_server):
    expert = make_need(1).matches[0].expert
    page.goto(f"{live_server}/mes-demandes/{inbox_token(expert)}?onglet=refuses")
    assert "Vous n'avez refusé aucune demande." in page.locator("main").inner_text()
    assert axe_violations(page) == []
    page.goto(f"{live_server}/mes-demandes/pas-un-jeton")
    assert page.locator("h1").inner_text() == "Ce lien n'est pas valide"
    assert axe_violations(page) == []
