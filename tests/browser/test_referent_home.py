"""A partner referent's back office in a real Chromium: they land on their own page, reach
their experts with the keyboard alone, read it on a phone, and axe finds no violation in
what the page adds (Flask-Admin's shared layout — the <html> without lang, the navbar's
contrast — belongs to the base templates)."""

from __future__ import annotations

import pytest

from tests.browser import axe_violations, log_in

pytestmark = pytest.mark.browser


def test_an_antenne_referent_reaches_its_experts_with_the_keyboard(page, live_server, scope_world):
    log_in(page, live_server, scope_world.antenne_referent.email, scope_world.password)
    assert page.locator("h1").inner_text() == "Espace partenaire"
    assert page.locator("[data-figure=experts]").inner_text() == "1"
    assert axe_violations(page) == []

    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('data-link')") == "experts":
            break
    else:
        raise AssertionError("the experts' link never received the focus with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + "/admin/expert/")
    text = page.locator("body").inner_text()
    assert "Alice Alpha" in text and "Quentin Quetzal" not in text and "Zorglub" not in text


def test_the_referent_page_fits_a_phone(page, live_server, scope_world):
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, live_server, scope_world.institution_referent.email, scope_world.password)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"
    assert page.locator("[data-figure=antennes]").is_visible()
    assert axe_violations(page) == []
