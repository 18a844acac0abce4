"""The antenne zone editor in a real Chromium: type a name, pick territories from the
autocomplete, save; the zone is stored as territory references, never as communes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import Antenne
from tests.browser import log_in as _log_in
from tests.factories import InstitutionFactory

pytestmark = pytest.mark.browser


def _pick(page, text: str, choice: str) -> None:
    page.click("#s2id_zone")
    page.keyboard.type(text)
    option = page.locator(".select2-result-label", has_text=choice).first
    option.wait_for()
    option.click()


def test_pick_territories_from_the_autocomplete(page, live_server, admin_user, db):
    InstitutionFactory(name="CMA France", slug="cma-france")
    _log_in(page, live_server, admin_user.email)
    page.goto(live_server + "/admin/antenne/new/")
    page.select_option("#institution", label="CMA France", force=True)
    page.fill("#name", "CMA Bretagne")
    _pick(page, "Bretagne", "Région : Bretagne (53)")
    _pick(page, "69001", "Commune : Lyon (69123)")
    page.click("input[type=submit][value='Enregistrer']")
    page.wait_for_url("**/admin/antenne/**")
    db.session.expire_all()
    antenne = db.session.scalar(select(Antenne).where(Antenne.name == "CMA Bretagne"))
    assert antenne is not None, page.content()[:3000]
    assert sorted(z.reference for z in antenne.zones) == ["commune:69123", "region:53"]


def test_unknown_code_typed_by_hand_is_refused_in_french(browser, live_server, admin_user, db):
    """Without JavaScript the field is a plain text input and the service still validates."""
    InstitutionFactory(name="CMA France", slug="cma-france")
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    page = context.new_page()
    try:
        _log_in(page, live_server, admin_user.email)
        page.goto(live_server + "/admin/antenne/new/")
        page.select_option("#institution", label="CMA France", force=True)
        page.fill("#name", "CMA Nulle part")
        page.fill("#zone", "departement:69 region:99")
        page.click("input[type=submit][value='Enregistrer']")
        assert "region:99" in page.content()
        db.session.expire_all()
        assert db.session.scalar(select(Antenne).where(Antenne.name == "CMA Nulle part")) is None
    finally:
        context.close()
