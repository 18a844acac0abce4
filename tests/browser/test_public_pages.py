"""The public pages and the login page in a real Chromium: DSFR styles load, axe finds no
violation, and a staff member can log in with the keyboard alone."""

from __future__ import annotations

import pytest

from tests.browser import axe_violations

pytestmark = pytest.mark.browser


def test_home_page_is_accessible(page, live_server):
    page.goto(live_server + "/")
    assert page.locator("h1").inner_text() == "Quel est votre besoin ?"
    # The DSFR stylesheet is served from the npm package copied by `make setup`.
    assert page.evaluate("getComputedStyle(document.querySelector('.fr-header')).display") != "inline"
    assert axe_violations(page) == []


def test_login_with_the_keyboard_then_logout(page, live_server, admin_user):
    page.goto(live_server + "/admin/")
    assert "/connexion" in page.url
    assert axe_violations(page) == []
    page.focus("#email")
    page.keyboard.type(admin_user.email)
    page.keyboard.press("Tab")
    page.keyboard.type("motdepasse-tres-long")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + "/admin/")
    assert "Espace de gestion" in page.content()
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/connexion")


def test_wrong_password_is_explained_in_french(page, live_server, admin_user):
    page.goto(live_server + "/connexion")
    page.fill("#email", admin_user.email)
    page.fill("#password", "mauvais-mot-de-passe")
    page.click("button[type=submit]")
    assert page.locator(".fr-error-text").inner_text() == "Adresse email ou mot de passe incorrect."
    assert axe_violations(page) == []
