"""The public request form in a real Chromium: sent with the keyboard alone, errors focused
and announced, usable on a phone, and no axe-core violation on any of its pages."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import Solicitation
from tests.browser import axe_violations

pytestmark = pytest.mark.browser

FORM = "/demande/recrutement"
# A complete, valid request as a business owner types it.
FILLED = [
    ("full_name", "Marie Dupont"),
    ("email", "marie.dupont@entreprise.fr"),
    ("phone", "06 12 34 56 78"),
    ("siret", "123 456 782 00028"),
    ("postal_code", "69002"),
    ("description", "Nous cherchons à recruter deux boulangers en CDI avant l'été."),
]


@pytest.fixture
def offline_page(page, live_server):
    """No request leaves the test server (the JDMA button's image is hosted by the observatory)."""
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())
    return page


def tab_to(page, element_id: str, limit: int = 40) -> None:
    """Press Tab until ``element_id`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} never received the focus with Tab")


def focused_id(page) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_a_request_sent_with_the_keyboard_alone(offline_page, live_server, app):
    page = offline_page
    page.goto(live_server + "/")
    tab_to(page, "")  # the skip link has no id: start from the top of the page
    page.keyboard.press("Tab")
    for _ in range(60):  # Tab through the home page to the subject's tile, then follow it
        if page.evaluate("document.activeElement.getAttribute('href')") == FORM:
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + FORM)

    for field, text in FILLED:
        tab_to(page, field)
        page.keyboard.type(text)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Envoyer ma demande"  # honeypot skipped
    page.keyboard.press("Enter")

    page.wait_for_url(live_server + FORM + "/merci")
    assert "Un expert vous rappelle sous 5 jours ouvrés" in page.content()
    assert page.get_by_role("link", name="Je donne mon avis").count() == 1
    with app.app_context():
        stored = _db.session.scalars(select(Solicitation)).one()
        assert (stored.siret, stored.phone, stored.insee_code) == ("12345678200028", "+33612345678", "69123")
    assert axe_violations(page) == []


def test_errors_are_focused_announced_and_lead_to_their_field(offline_page, live_server):
    page = offline_page
    page.goto(live_server + FORM)
    tab_to(page, "siret")
    page.keyboard.type("123")
    tab_to(page, "description")
    page.keyboard.type("Trop court")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert page.title().startswith("Erreur : ")
    # The summary has the focus, so screen readers read it first; its title names the count.
    assert focused_id(page) == "erreurs"
    summary = page.locator("#erreurs")
    assert summary.get_by_role("heading").inner_text() == "Le formulaire contient 6 erreurs"
    for field in ("full_name", "email", "phone", "siret", "postal_code", "description"):
        field_input = page.locator(f"#{field}")
        assert field_input.get_attribute("aria-invalid") == "true", field
        error_id = field_input.get_attribute("aria-describedby")
        assert page.locator(f"#{error_id}").inner_text(), field
    assert page.locator("#siret").input_value() == "123"
    # Each summary entry is a link to its field: following it moves the focus there.
    page.keyboard.press("Tab")
    for _ in range(5):
        if page.evaluate("document.activeElement.getAttribute('href')") == "#siret":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert focused_id(page) == "siret"
    assert axe_violations(page) == []


def test_the_commune_choice_works_with_the_keyboard_and_is_accessible(offline_page, live_server, app):
    page = offline_page
    page.goto(live_server + FORM)
    for selector, text in [
        ("#full_name", "Marie Dupont"),
        ("#email", "marie@entreprise.fr"),
        ("#phone", "0612345678"),
        ("#siret", "12345678200028"),
        ("#postal_code", "01400"),
        ("#description", "Nous cherchons à recruter deux boulangers en CDI avant l'été."),
    ]:
        page.fill(selector, text)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("#insee_code-error").inner_text().startswith("Ce code postal couvre plusieurs communes")
    assert axe_violations(page) == []

    tab_to(page, "insee_code-0")
    page.keyboard.press("ArrowDown")  # radios of a group are chosen with the arrows
    chosen = page.evaluate("document.activeElement.value")
    tab_to(page, "description")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + FORM + "/merci")
    with app.app_context():
        assert _db.session.scalars(select(Solicitation.insee_code)).one() == chosen


def test_pages_are_accessible_and_fit_a_phone(browser, live_server):
    context = browser.new_context(locale="fr-FR", viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())
        for path in ("/", FORM, FORM + "/merci", "/demande/sujet-inconnu"):
            page.goto(live_server + path)
            assert axe_violations(page) == [], path
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    finally:
        context.close()


def test_a_subject_question_is_required_announced_and_answered_with_the_keyboard(offline_page, live_server, app):
    """Issue 14: the subject's question is a group of radio buttons; unanswered, the summary names
    it and leads to it; answered with the keyboard, the answer is stored with the request."""
    from app.models import SubjectQuestion
    from tests.factories import subject

    with app.app_context():
        _db.session.add(
            SubjectQuestion(
                subject=subject("recrutement"),
                key="apprentis",
                label="Recrutez-vous des apprentis ?",
                choices=["Oui", "Non"],
            )
        )
        _db.session.commit()
    page = offline_page
    page.goto(live_server + FORM)
    for field, value in FILLED:
        page.fill(f"#{field}", value)
    with page.expect_navigation():
        page.evaluate("document.querySelector('form[method=post]').submit()")
    summary = page.locator("#erreurs")
    assert "Répondez à la question « Recrutez-vous des apprentis ? »" in summary.inner_text()
    assert axe_violations(page) == []
    summary.get_by_role("link", name=re.compile("apprentis")).click()
    assert focused_id(page) == "q-apprentis-0"
    page.keyboard.press("ArrowRight")  # radio buttons of a group move with the arrows
    assert focused_id(page) == "q-apprentis-1"
    assert page.locator("#q-apprentis-1").is_checked()
    page.keyboard.press("ArrowLeft")
    with page.expect_navigation():
        page.get_by_role("button", name="Envoyer ma demande").click()
    assert page.url.endswith("/merci")
    with app.app_context():
        stored = _db.session.scalars(select(Solicitation)).one()
        assert stored.subject_answers == {"apprentis": "Oui"}
