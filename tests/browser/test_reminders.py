"""The relances desk in a real Chromium: on a phone, with the keyboard alone, axe-clean, for
staff and for a partner referent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.models import Expert
from app.models.base import utcnow
from tests.browser import axe_violations, log_in
from tests.factories import ExpertFactory, make_need

pytestmark = pytest.mark.browser


def test_staff_clear_a_need_with_the_keyboard_on_a_phone(page, live_server, admin_user):
    need = make_need(created_at=utcnow() - timedelta(days=10))
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, live_server, admin_user.email)
    page.goto(live_server + "/admin/relances/besoins?panier=sans-reponse")
    assert page.locator(f"#besoin-{need.id}").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the desk scrolls sideways on a phone"
    assert axe_violations(page) == []

    for _ in range(120):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent").strip().startswith("Traité"):
            break
    else:
        raise AssertionError("the « Traité » button never received the focus with Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Marqué comme traité" in page.locator("body").inner_text()
    assert page.locator(f"#besoin-{need.id}").count() == 0
    assert axe_violations(page) == []


def test_a_referent_reminds_an_expert_from_the_experts_baskets(page, live_server, db, scope_world):
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    for age in (3, 16, 20):
        make_need(experts=[alice], created_at=utcnow() - timedelta(days=age))
    make_need(experts=[ExpertFactory(full_name="Zoé Ailleurs")], created_at=utcnow() - timedelta(days=16))
    log_in(page, live_server, scope_world.institution_referent.email, scope_world.password)
    page.goto(live_server + "/admin/relances/experts?panier=2-a-5")
    body = page.locator("main").inner_text()
    assert "Alice Alpha" in body and "Zoé Ailleurs" not in body
    assert axe_violations(page) == []
    page.get_by_role("button", name="Relancer par courriel : Alice Alpha").click()
    page.wait_for_load_state()
    assert "Relance envoyée à Alice Alpha." in page.locator("body").inner_text()
    assert axe_violations(page) == []
