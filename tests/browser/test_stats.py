"""``/stats`` in a real Chromium (issue 15): on a phone and a desktop, filtered with the keyboard
alone, axe-clean, nothing wider than the screen; a screenshot of each is kept for a person to
look at (``STATS_SCREENSHOTS`` names the folder)."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser import axe_violations

pytestmark = pytest.mark.browser

PERIOD = "/stats?debut=2026-03&fin=2026-04"


@pytest.fixture
def figures(app):
    from tests.factories import make_stats_world

    with app.app_context():
        make_stats_world()


@pytest.mark.parametrize(
    ("name", "viewport"), [("telephone", {"width": 360, "height": 740}), ("bureau", {"width": 1280, "height": 900})]
)
def test_stats_on_a_phone_and_a_desktop(browser, live_server, figures, name, viewport):
    context = browser.new_context(locale="fr-FR", viewport=viewport, is_mobile=name == "telephone")
    try:
        page = context.new_page()
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())
        page.goto(live_server + PERIOD)
        assert page.title() == "Statistiques — Place des Entreprises"
        assert page.locator("svg[role=img]").count() == 6  # the headline and five monthly series
        assert page.get_by_role("img", name=re.compile("Part des besoins clôturés avec une aide proposée")).count()
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        folder = os.environ.get("STATS_SCREENSHOTS")
        if folder:
            page.screenshot(path=os.path.join(folder, f"stats-{name}.png"), full_page=True)
    finally:
        context.close()


def test_stats_filtered_with_the_keyboard(page, live_server, figures):
    page.goto(live_server + PERIOD)
    page.focus("#region")
    page.keyboard.press("Tab")  # to the theme
    page.keyboard.press("Shift+Tab")
    page.select_option("#region", "84")  # a select is chosen with the arrows; Playwright types for us
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Afficher":
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "region=84" in page.url
    assert "moins de 5" in page.content()
    # The data behind each chart opens from the keyboard.
    summary = page.locator("summary").first
    summary.focus()
    page.keyboard.press("Enter")
    assert page.locator("details").first.get_attribute("open") is not None
    assert axe_violations(page) == []


def test_stats_print_with_every_data_table(page, live_server, figures):
    """Printed, the charts keep their data tables (closed on screen) and the filters go away."""
    page.goto(live_server + PERIOD)
    cell = page.locator("details table").first
    assert not cell.is_visible()
    page.emulate_media(media="print")
    assert cell.is_visible()
    assert not page.locator("form").first.is_visible()
