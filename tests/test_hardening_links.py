"""Finding 4 of the security review: expert links no longer renew forever. A link shown on a
page carries the issue date of the link that opened the page, and an expired link's page sends
a fresh link by email, to the address in the address book only."""

from __future__ import annotations

import re
import time

from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.models import OutboundEmail
from app.services.messaging.links import expert_token, inbox_token
from tests.factories import make_need
from tests.helpers import body, csrf_token_from, text


def _old(app, monkeypatch, make, days: float):
    """A token made ``days`` ago."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time() - days * 86400))
    token = make()
    monkeypatch.undo()
    return token


def test_links_shown_by_a_page_do_not_outlive_the_link_that_opened_it(app, client, db, monkeypatch):
    match = make_need(1).matches[0]
    max_days = app.config["EXPERT_LINK_MAX_AGE_DAYS"]
    old = _old(app, monkeypatch, lambda: expert_token(match), max_days - 1)  # still valid, one day left
    page = body(client.get(f"/expert/{old}"))
    inbox_path = re.search(r'href="(/mes-demandes/[^"]+)"', page).group(1)
    inbox = body(client.get(inbox_path))
    need_path = re.search(r'href="(/expert/[^"#]+)"', inbox).group(1)
    assert client.get(need_path).status_code == 200
    # Two days later the first link has expired, and so have the links its pages showed.
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    for path in (f"/expert/{old}", inbox_path, need_path):
        assert client.get(path).status_code == 410, path


def test_an_expired_link_sends_a_fresh_one_to_the_experts_address_once_a_day(app, client, db, monkeypatch):
    match = make_need(1).matches[0]
    days = app.config["EXPERT_LINK_MAX_AGE_DAYS"] + 5
    old = _old(app, monkeypatch, lambda: expert_token(match), days)
    expired = client.get(f"/expert/{old}")
    assert expired.status_code == 410
    form = {"token": old, "csrf_token": csrf_token_from(body(expired))}
    sent = client.post("/expert/nouveau-lien", data=form)
    assert sent.status_code == 200 and "Nouveau lien envoyé" in text(sent)
    [email] = [e for e in db.session.scalars(select(OutboundEmail)) if ":nouveau-lien:" in e.key]
    assert email.recipient == match.expert.email
    fresh = re.search(r"/expert/(\S+)", email.body_text).group(1)
    assert client.get(f"/expert/{fresh}").status_code == 200
    again = client.post("/expert/nouveau-lien", data=form)
    assert again.status_code == 200
    assert len([e for e in db.session.scalars(select(OutboundEmail)) if ":nouveau-lien:" in e.key]) == 1
    # An altered token gets nothing.
    forged = client.post("/expert/nouveau-lien", data={**form, "token": old[:-3] + "abc"})
    assert forged.status_code == 404


def test_an_expired_inbox_link_offers_a_fresh_one_too(app, client, db, monkeypatch):
    match = make_need(1).matches[0]
    old = _old(app, monkeypatch, lambda: inbox_token(match.expert), app.config["EXPERT_LINK_MAX_AGE_DAYS"] + 1)
    expired = client.get(f"/mes-demandes/{old}")
    assert expired.status_code == 410 and "Recevoir un nouveau lien par courriel" in text(expired)
