"""The qualification desk in a real Chromium: a staff member logs in, finds a request held
for review in « À qualifier », corrects its subject, unticks a suggested expert, adds another
through the autocomplete, sends it, and reads the matches on the need's page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import Solicitation
from app.services.requests.solicitations import submit_solicitation
from app.services.transactions import transaction
from tests.browser import axe_violations
from tests.browser import log_in as _log_in
from tests.factories import solicitation_input

pytestmark = pytest.mark.browser


def test_staff_qualify_and_send_a_held_request(page, live_server, admin_user, db, app, desk_book, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    with transaction():
        solicitation = submit_solicitation(solicitation_input(full_name="Camille Qualif", subject_slug="formation"))
    _log_in(page, live_server, admin_user.email)

    # The queue: the request is in « À qualifier »; its page opens from its row.
    page.goto(live_server + "/admin/solicitation/")
    page.get_by_role("link", name=re.compile(r"^À qualifier \(1\)")).click()
    page.wait_for_url("**onglet=a-qualifier**")
    assert axe_violations(page) == []
    assert "Camille Qualif" in page.locator("table.model-list").inner_text()
    page.locator(f'a[href*="details/?id={solicitation.id}"]').first.click()
    page.wait_for_url(f"**/admin/solicitation/details/**id={solicitation.id}**")
    assert "Mode revue : toute demande attend l'équipe." in page.locator("#qualification").inner_text()
    assert axe_violations(page) == []

    # The business chose training; it is about recruiting.
    page.select_option("#correct-subject", label="Recruter un ou plusieurs salariés")
    with page.expect_navigation():
        page.get_by_role("button", name="Corriger le sujet").click()
    assert "Sujet corrigé : « Recruter un ou plusieurs salariés »." in page.content()
    section = page.locator("#send-form")
    assert "Besoin 1 : « Recruter un ou plusieurs salariés »" in section.inner_text()

    # Both experts of the rule are ticked, with why; Bruno is unticked, Denis added.
    alice = page.get_by_label("Alice CCI")
    bruno = page.get_by_label("Bruno FT")
    assert alice.is_checked() and bruno.is_checked()
    assert "département:69 (Rhône), zone de l'antenne" in section.inner_text()
    bruno.uncheck()
    added = page.get_by_label("Ajouter un expert hors suggestion")
    added.type("denis")
    option = page.locator("#expert-choices option").first
    option.wait_for(state="attached")
    picked = option.get_attribute("value")
    assert picked.startswith("Denis Marseille <denis@cci.example>")
    added.fill(picked)
    with page.expect_navigation():
        page.get_by_role("button", name="Envoyer aux experts").click()
    assert "Demande envoyée aux experts : 1 besoin(s), 2 expert(s) prévenu(s) par email." in page.content()
    assert "Transmise aux experts" in page.locator("#qualification").inner_text()

    # The need's page lists the two matches and why each expert got it.
    page.locator("#qualification").get_by_role("link", name=re.compile(r"^Besoin #")).click()
    page.wait_for_url("**/admin/need/details/**")
    text = page.locator("body").inner_text()
    assert "Alice CCI" in text and "Denis Marseille" in text and "Bruno FT" not in text
    assert "departement:69, zone de l'antenne" in text and "ajouté par l'équipe" in text
    db.session.expire_all()
    sent = db.session.scalar(select(Solicitation).where(Solicitation.id == solicitation.id))
    assert sent.status == "processed" and sent.subject.slug == "recrutement"
