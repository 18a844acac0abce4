"""The invitation in a real Chromium: staff invite a referent from the users view, the
referent opens the link of the invitation email (read from the outbox row), chooses a
password with the keyboard and lands logged in, seeing their role and scope."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import OutboundEmail, User
from tests.browser import axe_violations
from tests.browser import log_in as _log_in
from tests.factories import InstitutionFactory

pytestmark = pytest.mark.browser

NEW_PASSWORD = "vélo-rouge-tulipe-7-orage"


def test_staff_invite_a_referent_who_chooses_a_password_and_lands_logged_in(page, live_server, admin_user, db):
    InstitutionFactory(name="CMA France", slug="cma-france")
    _log_in(page, live_server, admin_user.email)
    page.goto(live_server + "/admin/user/new/")
    assert "une invitation est envoyée" in page.content()
    page.fill("#email", "camille.leroy@cma.example")
    page.fill("#full_name", "Camille Leroy")
    page.select_option("#role", "referent", force=True)
    page.select_option("#institution", label="CMA France", force=True)
    page.click("input[type=submit][value='Enregistrer']")
    page.wait_for_url("**/admin/user/**")
    assert "Invitation envoyée à camille.leroy@cma.example" in page.content()

    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.email == "camille.leroy@cma.example"))
    assert user is not None and user.password_hash is None
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.recipient == user.email))
    assert "Référent de l'institution CMA France" in email.body_text
    path = re.search(r"http://127\.0\.0\.1:5000(/invitation/\S+)", email.body_text).group(1)

    page.context.clear_cookies()  # the referent's own browser
    page.goto(live_server + path)
    assert "Référent de l'institution CMA France" in page.inner_text("main")
    assert axe_violations(page) == []
    page.focus("#password")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type("pas-le-meme-mot-de-passe")
    with page.expect_navigation():  # the refused form comes back as a new page (422)
        page.keyboard.press("Enter")
    assert "Les deux mots de passe ne sont pas identiques." in page.inner_text("main")
    assert axe_violations(page) == []

    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirmation", NEW_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + "/admin/")
    assert "Bienvenue : votre compte est activé." in page.content()

    page.goto(live_server + "/mon-compte")
    main = page.inner_text("main")
    assert "Camille Leroy" in main and "Référent de l'institution CMA France" in main
    assert axe_violations(page) == []
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash is not None
