"""The discussion thread in a real Chromium: an expert writes with the keyboard alone, reads
the message back in the thread, and the page stays free of axe-core violations."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import Comment
from app.services.messaging.discussion import post_comment
from app.services.messaging.links import expert_token
from app.services.transactions import transaction
from tests.browser import axe_violations
from tests.factories import make_need

pytestmark = pytest.mark.browser


def test_the_expert_writes_on_the_thread_with_the_keyboard(page, db, live_server):
    need = make_need(2, statuses=("quo", "taking_care"))
    with transaction():
        post_comment(
            need, body="J'ai appelé, je vous tiens au courant : https://exemple.fr", expert=need.matches[1].expert
        )
    url = f"{live_server}/expert/{expert_token(need.matches[0])}"
    page.goto(url)
    thread = page.locator("#discussion")
    assert "J'ai appelé" in thread.inner_text()
    assert thread.get_by_role("link", name="https://exemple.fr").get_attribute("rel") == "noopener noreferrer nofollow"
    assert axe_violations(page) == []

    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "comment-body":
            break
    else:
        raise AssertionError("le champ du message n'est pas atteignable au clavier")
    page.keyboard.type("Je passe la main pour l'export.")
    page.keyboard.press("Enter")
    page.keyboard.type("<b>Merci</b>")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Envoyer le message"
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert page.url == f"{url}#discussion"
    assert "votre message est dans la discussion" in page.locator(".fr-alert").inner_text()
    messages = thread.get_by_role("listitem")
    assert messages.count() == 2
    newest = messages.nth(1).inner_text()
    assert "Je passe la main pour l'export.\n<b>Merci</b>" in newest  # shown as typed, as text
    _db.session.expire_all()
    newest_comment = _db.session.scalars(select(Comment).order_by(Comment.id.desc())).first()
    assert newest_comment.expert_id == need.matches[0].expert_id
    assert axe_violations(page) == []
