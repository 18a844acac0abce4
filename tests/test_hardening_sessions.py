"""Finding 2 of the security review: a session the server can end.

A cookie copied before « Se déconnecter » (or before the person closes that session, changes
their password, or staff deactivate the account) no longer opens the back office."""

from __future__ import annotations

from sqlalchemy import select

from app.models import UserSession
from app.services.accounts.users import delete_user
from app.services.transactions import transaction
from tests.helpers import PASSWORD, body, csrf_token_from, login, text


def _copy_cookie(app, client):
    """A second browser holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    return thief


def _opens_back_office(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_logout_ends_a_copied_cookie(app, db, client, admin_user):
    assert login(client, admin_user.email).status_code == 302
    thief = _copy_cookie(app, client)
    assert _opens_back_office(thief)
    token = csrf_token_from(body(client.get("/admin/")))
    assert client.post("/deconnexion", data={"csrf_token": token}).status_code == 302
    answer = thief.get("/admin/")
    assert answer.status_code == 302 and "/connexion" in answer.headers["Location"]
    row = db.session.scalar(select(UserSession))
    assert (row.end_reason, row.ended_at is not None) == ("logout", True)


def test_the_person_lists_and_closes_their_sessions(app, db, admin_user, logged_in):
    office, laptop = logged_in(admin_user), logged_in(admin_user)
    page = text(office.get("/mon-compte"))
    assert "Mes sessions ouvertes" in page and page.count('<input type="hidden" name="id"') == 2
    assert "(cette session)" in page
    # The laptop's session is the second one opened.
    other = db.session.scalars(select(UserSession).order_by(UserSession.id.desc())).first()
    closed = office.post(
        "/mon-compte/sessions/fermer", data={"id": other.id, "csrf_token": csrf_token_from(page)}, follow_redirects=True
    )
    assert "La session est fermée." in text(closed)
    assert not _opens_back_office(laptop) and _opens_back_office(office)
    # Another person's session, or nonsense, is refused in French.
    refused = office.post(
        "/mon-compte/sessions/fermer", data={"id": "999999", "csrf_token": csrf_token_from(page)}, follow_redirects=True
    )
    assert "Session non fermée : Cette session n'existe pas ou ne vous appartient pas." in text(refused)


def test_close_every_other_session(app, db, admin_user, logged_in):
    office, laptop, phone = logged_in(admin_user), logged_in(admin_user), logged_in(admin_user)
    page = text(office.get("/mon-compte"))
    done = office.post(
        "/mon-compte/sessions/fermer", data={"toutes": "1", "csrf_token": csrf_token_from(page)}, follow_redirects=True
    )
    assert "2 autre(s) session(s) fermée(s)." in text(done)
    assert _opens_back_office(office) and not _opens_back_office(laptop) and not _opens_back_office(phone)


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, db, admin_user, logged_in):
    office, laptop = logged_in(admin_user), logged_in(admin_user)
    page = office.get("/mon-compte")
    changed = office.post(
        "/mon-compte",
        data={
            "csrf_token": csrf_token_from(body(page)),
            "current_password": PASSWORD,
            "password": "un-tout-nouveau-mot-de-passe-2026",
            "confirmation": "un-tout-nouveau-mot-de-passe-2026",
        },
    )
    assert changed.status_code == 302
    assert _opens_back_office(office) and not _opens_back_office(laptop)
    reasons = sorted(r.end_reason or "ouverte" for r in db.session.scalars(select(UserSession)))
    assert reasons == ["ouverte", "password"]


def test_deactivating_an_account_ends_its_sessions(app, db, admin_user, logged_in):
    from app.services.accounts.users import create_user

    with transaction():
        colleague = create_user("collegue@place.example", role="admin", password=PASSWORD)
    browser = logged_in(colleague)
    thief = _copy_cookie(app, browser)
    with transaction():
        delete_user(colleague)
    assert not _opens_back_office(browser) and not _opens_back_office(thief)
    row = db.session.scalar(select(UserSession).where(UserSession.user_id == colleague.id))
    assert row.end_reason == "deactivated"


def test_a_forged_or_missing_server_session_is_logged_out(app, db, client, admin_user):
    assert login(client, admin_user.email).status_code == 302
    with client.session_transaction() as cookie:
        cookie["_pde_sid"] = "forged-token"
    answer = client.get("/admin/", follow_redirects=True)
    assert "Votre session a été fermée : reconnectez-vous." in text(answer)
