"""The fault campaign's findings outside the email pipeline (12, 11) and the bot trap (10)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from app.models import Solicitation
from tests.helpers import PASSWORD, body, csrf_token_from, login

VALID = {
    "full_name": "Marie Dupont",
    "email": "marie.dupont@entreprise.example",
    "phone": "06 12 34 56 78",
    "siret": "123 456 782 00028",
    "postal_code": "69002",
    "insee_code": "",
    "description": "Nous cherchons à recruter deux boulangers en CDI d'ici l'été, sans succès jusqu'ici.",
}


def _form_fields(client, path: str = "/demande/recrutement") -> dict[str, str]:
    import re

    html = body(client.get(path))
    served = re.search(r'name="served_at" value="([^"]*)"', html).group(1)
    return {"csrf_token": csrf_token_from(html), "served_at": served}


@pytest.fixture
def redis_down(make_app):
    """Rate limits on, their Redis unreachable (nothing listens on port 1)."""
    from app.extensions import limiter

    was_enabled = limiter.enabled
    other = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", FORM_MIN_SECONDS=0)
    try:
        yield other
    finally:
        # The limiter is shared: give it a storage that answers again before it is reset.
        make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
        limiter.reset()
        limiter.enabled = was_enabled


def test_a_redis_outage_loses_no_request_and_locks_nobody_out(redis_down, db, admin_user, caplog):
    client = redis_down.test_client()
    caplog.set_level(logging.ERROR)
    posted = client.post("/demande/recrutement", data={**_form_fields(client), **VALID})
    assert posted.status_code == 303, body(posted)[:500]
    with redis_down.app_context():
        assert db.session.scalar(select(func.count()).select_from(Solicitation)) == 1
    assert login(client, admin_user.email, PASSWORD).status_code == 302


# ---------------------------------------------------------------- finding 11 (and the bot trap of 10)


def _stored(db) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Solicitation))


def _confirmations() -> int:
    from tests.helpers import emails_by_key

    return len([key for key in emails_by_key("solicitation:") if key.endswith(":confirmation")])


def test_a_double_click_stores_and_sends_once(make_app, db):
    app = make_app(FORM_MIN_SECONDS=0)
    client = app.test_client()
    fields = {**_form_fields(client), **VALID}
    first = client.post("/demande/recrutement", data=fields)
    second = client.post("/demande/recrutement", data=fields)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]  # the same confirmation page
    with app.app_context():
        assert _stored(db) == 1
        assert _confirmations() == 1


def test_one_signed_time_passes_the_bot_trap_once(make_app, db):
    """A bot that kept one signed serve time cannot post again and again with it."""
    app = make_app(FORM_MIN_SECONDS=0)
    client = app.test_client()
    hidden = _form_fields(client)
    client.post("/demande/recrutement", data={**hidden, **VALID})
    client.post(
        "/demande/recrutement", data={**hidden, **VALID, "email": "autre@bot.example", "siret": "552 100 554 00005"}
    )
    with app.app_context():
        assert _stored(db) == 1


def test_parallel_copies_of_one_post_store_and_route_once(make_app, db):
    import threading

    if db.engine.dialect.name != "postgresql":
        pytest.skip("Écritures concurrentes : PostgreSQL (en CI) ; SQLite sérialise les écritures autrement.")
    app = make_app(FORM_MIN_SECONDS=0)
    client = app.test_client()
    fields = {**_form_fields(client), **VALID}
    cookie = client.get_cookie("session").value
    barrier = threading.Barrier(10)
    answers = []

    def post():
        browser = app.test_client()
        browser.set_cookie("session", cookie)
        barrier.wait()
        answers.append(browser.post("/demande/recrutement", data=fields).status_code)

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == [303] * 10
    with app.app_context():
        assert _stored(db) == 1
        assert _confirmations() == 1
