"""The coverage page in a real Chromium: the map is drawn, a keyboard reaches its départements
(each announcing its name and state), and axe finds no serious accessibility violation."""

from __future__ import annotations

import pytest

from app.services.accounts.users import create_user
from app.services.transactions import transaction
from tests.browser import axe_violations, log_in
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, zone

pytestmark = pytest.mark.browser

PASSWORD = "motdepasse-tres-long"


@pytest.fixture
def referent(db):
    cma = InstitutionFactory(name="CMA Rhône-Ain", slug="cma-rhone-ain")
    lyon = AntenneFactory(institution=cma, name="CMA Lyon")
    zone(lyon, "departement:69")
    bourg = AntenneFactory(institution=cma, name="CMA Bourg")
    zone(bourg, "departement:01")
    offer(ExpertFactory(antenne=lyon, full_name="Anne Lyon"), "tresorerie")
    with transaction():
        return create_user("ref@cma.example", role="referent", institution_slug="cma-rhone-ain", password=PASSWORD)


def test_the_map_is_drawn_and_reachable_with_the_keyboard(page, live_server, referent):
    log_in(page, live_server, referent.email, PASSWORD)
    page.goto(live_server + "/admin/couverture/?sujet=tresorerie")

    svg = page.locator("svg[data-map=departements]")
    svg.wait_for()
    box = svg.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 200
    assert page.locator("svg[data-map=departements] [data-code]").count() == 96

    # Tab through the page until a département of the map has the focus.
    focused = None
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const a = document.activeElement;"
            " return a && a.closest('svg[data-map]') ? a.getAttribute('aria-label') : null; }"
        )
        if focused:
            break
    assert focused in {"Ain (01) : non couvert", "Rhône (69) : couvert"}, focused
    stroke = page.evaluate("() => getComputedStyle(document.activeElement.querySelector('path')).strokeWidth")
    assert stroke == "3px"  # the focused département is outlined

    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/couverture/departement**")
    assert page.locator("h1").inner_text().endswith("Faire face à des difficultés de trésorerie")

    for url in ("/admin/couverture/?sujet=tresorerie", "/admin/couverture/departement?sujet=tresorerie&departement=01"):
        page.goto(live_server + url)
        assert axe_violations(page) == [], url
