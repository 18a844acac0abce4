"""The qualification desk in a real Chromium: a staff member logs in, finds a request held
for review in « À qualifier », corrects its subject, unticks a suggested expert, adds another
through the autocomplete, sends it, and reads the matches on the need's page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import Solicitation
from app.services.requests.solicitations import submit_solicitation
from tests.browser import log_in as _log_in
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, zone
from tests.test_solicitations import request

pytestmark = pytest.mark.browser

# What the desk adds to the back office: checked by axe-core on its own (Flask-Admin's shared
# layout — the <html> without lang, the navbar's contrast — belongs to the base templates).
DESK_SECTIONS = {"include": [["#qualification"], ["#notes"]]}


def desk_violations(page, context=DESK_SECTIONS) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=context)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


@pytest.fixture
def book(db):
    """Alice (CCI, the Rhône) and Bruno (national) take training at Lyon; Denis, in
    Marseille, is outside the rule."""
    cci = InstitutionFactory(name="CCI Lyon Métropole")
    rhone = AntenneFactory(institution=cci, name="CCI — Rhône")
    zone(rhone, "departement:69")
    alice = ExpertFactory(antenne=rhone, full_name="Alice CCI", email="alice@cci.example")
    offer(alice, "formation")
    national = AntenneFactory(institution=InstitutionFactory(name="France Travail"), name="France Travail — national")
    zone(national, "national")
    bruno = ExpertFactory(antenne=national, full_name="Bruno FT", email="bruno@ft.example")
    offer(bruno, "formation")
    south = AntenneFactory(institution=cci, name="CCI — Bouches-du-Rhône")
    zone(south, "departement:13")
    denis = ExpertFactory(antenne=south, full_name="Denis Marseille", email="denis@cci.example")
    offer(denis, "recrutement")
    return {"alice": alice, "bruno": bruno, "denis": denis}


def test_staff_qualify_and_send_a_held_request(page, live_server, admin_user, db, app, book, monkeypatch):
    monkeypatch.setitem(app.config, "ROUTING_MODE", "review")
    solicitation = submit_solicitation(request(full_name="Camille Qualif"))
    _log_in(page, live_server, admin_user.email)

    # The queue: the request is in « À qualifier »; its page opens from its row.
    page.goto(live_server + "/admin/solicitation/")
    page.get_by_role("link", name=re.compile(r"^À qualifier \(1\)")).click()
    page.wait_for_url("**onglet=a-qualifier**")
    assert desk_violations(page, {"include": [["nav[aria-label='Onglets des sollicitations']"]]}) == []
    assert "Camille Qualif" in page.locator("table.model-list").inner_text()
    page.locator(f'a[href*="details/?id={solicitation.id}"]').first.click()
    page.wait_for_url(f"**/admin/solicitation/details/**id={solicitation.id}**")
    assert "Mode revue : toute demande attend l'équipe." in page.locator("#qualification").inner_text()
    assert desk_violations(page) == []

    # The business chose recruitment; it is about training.
    page.select_option("#correct-subject", label="Former mes salariés ou me former")
    with page.expect_navigation():
        page.get_by_role("button", name="Corriger le sujet").click()
    assert "Sujet corrigé : « Former mes salariés ou me former »." in page.content()
    section = page.locator("#send-form")
    assert "Besoin 1 : « Former mes salariés ou me former »" in section.inner_text()

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
    assert sent.status == "processed" and sent.subject.slug == "formation"
