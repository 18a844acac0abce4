"""Accounts: invitations, password reset, password policy, throttling and lockout,
session expiry, and answers that never tell whether an address has an account.

Time is controlled through the services' ``now`` parameters (links signed or checked at a
chosen moment, a lock judged later) and through the session's own timestamps, never slept.
"""

from __future__ import annotations

import http.server
import logging
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.models import OutboundEmail, User
from app.models.base import utcnow
from app.services.transactions import transaction
from tests.factories import AntenneFactory, InstitutionFactory
from tests.helpers import body, csrf_token_from, login, text

PASSWORD = "motdepasse-tres-long"
NEW_PASSWORD = "vélo-rouge-tulipe-7-orage"
PWNED_DATA = Path(__file__).parent / "data" / "pwned"


def without_tokens(html: str, *emails: str) -> str:
    """A page with its CSRF token (and the given addresses) blanked, to compare two answers."""
    html = re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1", html)
    for email in emails:
        html = html.replace(email, "ADRESSE")
    return html


def post_page(client, url: str, data: dict, *, token_from: str | None = None):
    page = client.get(token_from or url)
    return client.post(url, data={**data, "csrf_token": csrf_token_from(body(page))})


def outbox(kind: str | None = None) -> list[OutboundEmail]:
    from app.extensions import db

    query = select(OutboundEmail).order_by(OutboundEmail.id)
    if kind:
        query = query.where(OutboundEmail.key.like(f"user:%:{kind}:%"))
    return list(db.session.scalars(query))


def path_in(email: OutboundEmail, prefix: str) -> str:
    """The one link of ``email`` under ``/prefix/``, as a path for the test client."""
    found = re.findall(rf"http://127\.0\.0\.1:5000(/{prefix}/\S+)", email.body_text)
    assert len(found) == 1, email.body_text
    return found[0]


@pytest.fixture
def cci(db):
    return InstitutionFactory(name="CCI Rhône", slug="cci-rhone")


@pytest.fixture
def invited(db, admin_user, cci):
    from app.services.accounts.accounts import invite_user

    with transaction():
        return invite_user("Referente@CCI.example", "referent", cci, by=admin_user, full_name="Camille Dupont")


def choose(client, path: str, password: str, confirmation: str | None = None):
    return post_page(client, path, {"password": password, "confirmation": confirmation or password})


# ---------------------------------------------------------------- invitation


def test_staff_invite_a_referent_from_the_users_view(admin_client, db, cci):
    response = post_page(
        admin_client,
        "/admin/user/new/",
        {"email": "Referente@CCI.example", "full_name": "Camille Dupont", "role": "referent", "institution": cci.id},
    )
    assert response.status_code == 302, body(response)
    user = db.session.scalar(select(User).where(User.email == "referente@cci.example"))
    assert user.password_hash is None and user.invited_at is not None
    assert user.invited_by.email == "support@place.example"
    (email,) = outbox()
    assert email.key == f"user:{user.id}:invitation:1"
    assert email.recipient == "referente@cci.example"
    assert "Équipe support vous invite" in email.body_text
    assert "Référent de l'institution CCI Rhône" in email.body_text
    assert "72 heures" in email.body_text
    assert "Référent de l&#39;institution CCI Rhône" in email.body_html
    listing = body(admin_client.get("/admin/user/"))
    assert "Invité le" in listing and "Actif" in listing


def test_the_invitation_names_the_antenne_and_its_institution(db, admin_user, cci):
    from app.services.accounts.accounts import invite_user

    antenne = AntenneFactory(institution=cci, name="CCI Villefranche")
    invite_user("ref@cci.example", "referent", antenne=antenne, by=admin_user)
    (email,) = outbox()
    assert "Référent de l'antenne CCI Villefranche (institution CCI Rhône)" in email.body_text


def test_the_invitation_link_activates_the_account_once(client, db, invited):
    path = path_in(outbox("invitation")[0], "invitation")
    form = body(client.get(path))
    assert "referente@cci.example" in form and "Référent de l&#39;institution CCI Rhône" in form

    response = choose(client, path, NEW_PASSWORD)
    assert response.status_code == 302
    assert response.location == "/admin/"
    account = body(client.get("/mon-compte"))
    assert "Référent de l&#39;institution CCI Rhône" in account and "Camille Dupont" in account
    db.session.refresh(invited)
    assert invited.password_hash and invited.password_changed_at is not None

    client.post("/deconnexion", data={"csrf_token": csrf_token_from(account)})
    used = client.get(path)
    assert used.status_code == 404
    assert "déjà servi" in body(used)
    assert login(client, "referente@cci.example", NEW_PASSWORD).status_code == 302


def test_an_invitation_expires(client, db, admin_user, cci):
    from app.services.accounts.accounts import ExpiredAccountLink, invite_user, user_for_invitation

    issued = utcnow() - timedelta(hours=73)
    invite_user("tard@cci.example", "referent", cci, by=admin_user, now=issued)
    path = path_in(outbox()[0], "invitation")
    token = path.rsplit("/", 1)[1]
    assert user_for_invitation(token, now=issued + timedelta(hours=71)).email == "tard@cci.example"
    with pytest.raises(ExpiredAccountLink):
        user_for_invitation(token, now=issued + timedelta(hours=72, seconds=1))

    expired = client.get(path)
    assert expired.status_code == 410
    assert "Cette invitation a expiré" in body(expired) and "Mot de passe oublié" in body(expired)
    refused = post_page(client, path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}, token_from="/connexion")
    assert refused.status_code == 410
    assert db.session.scalar(select(User.password_hash).where(User.email == "tard@cci.example")) is None


def test_a_new_invitation_is_sent_again_and_replaces_the_old_link(admin_client, db, invited, admin_user):
    from tests.helpers import post_action

    first = path_in(outbox()[0], "invitation")
    post_action(admin_client, "user", "renvoyer_invitation", [invited.id])
    emails = outbox("invitation")
    assert [e.key for e in emails] == [f"user:{invited.id}:invitation:1", f"user:{invited.id}:invitation:2"]
    assert admin_client.get(first).status_code == 404
    assert admin_client.get(path_in(emails[1], "invitation")).status_code == 200


def test_an_active_account_is_not_invited_again(admin_client, db, admin_user):
    from app.services.accounts.accounts import invite_user
    from app.services.errors import ServiceError
    from tests.helpers import post_action

    with pytest.raises(ServiceError, match="lien de réinitialisation"):
        invite_user(admin_user.email, "admin", by=admin_user)
    db.session.rollback()
    post_action(admin_client, "user", "renvoyer_invitation", [admin_user.id])
    assert outbox() == []


def test_a_referent_invitation_needs_a_scope(admin_client, db):
    response = post_page(admin_client, "/admin/user/new/", {"email": "seul@x.example", "role": "referent"})
    assert "Un référent doit être rattaché" in body(response)
    assert db.session.scalar(select(func.count(User.id))) == 1
    assert outbox() == []


def test_the_invitation_email_reaches_a_real_smtp_server(make_smtp_app, smtp_server):
    from app.extensions import db
    from app.services.accounts.accounts import invite_user
    from app.services.accounts.users import create_user

    mailing = make_smtp_app()
    with mailing.app_context():
        with transaction():
            staff = create_user("chef@place.example", role="admin", password=PASSWORD, full_name="Alix Martin")
            institution = InstitutionFactory(name="CMA Bretagne", slug="cma-bretagne")
            invite_user("ref@cma.example", "referent", institution, by=staff)
        assert db.session.scalar(select(OutboundEmail.state)) == "sent"
    (message,) = smtp_server.to("ref@cma.example")
    assert message["Subject"] == "Votre accès à l'espace de gestion de Place des Entreprises"
    plain = message.get_body(("plain",)).get_content()
    assert "Alix Martin vous invite" in plain and "Référent de l'institution CMA Bretagne" in plain
    path = re.search(r"http://127\.0\.0\.1:5000(/invitation/\S+)", plain).group(1)
    with mailing.test_client() as browser:
        assert browser.get(path).status_code == 200
        assert choose(browser, path, NEW_PASSWORD).status_code == 302
        assert "Référent de l&#39;institution CMA Bretagne" in body(browser.get("/mon-compte"))


# ---------------------------------------------------------------- password policy


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("court-court", "au moins 12 caractères"),
        ("referente@cci.example", "ni votre adresse email ni votre nom"),
        ("Camille-Dupont-1980", "ni votre adresse email ni votre nom"),
        ("qwerty123456", "divulgués lors de fuites de données"),
        ("azertyuiop123", "à peine modifié, un mot de passe divulgué"),
        ("abcdefghijklmno", "trop facile à deviner"),
        ("motdepasse2024", "à peine modifié, un mot de passe divulgué"),
        ("Marseille2024!", "à peine modifié, un mot de passe divulgué"),
        ("aaaaaaaaaaaaaaaa", "trop facile à deviner"),
        ("x" * 129, "ne doit pas dépasser 128 caractères"),
    ],
)
def test_weak_passwords_are_refused_in_french_next_to_the_field(client, db, invited, password, message):
    path = path_in(outbox()[0], "invitation")
    response = choose(client, path, password)
    assert response.status_code == 422
    page = body(response)
    assert message in page.replace("&#39;", "'")
    assert 'id="password-error"' in page
    db.session.refresh(invited)
    assert invited.password_hash is None
    assert client.get(path).status_code == 200  # the link still works for a better try


def test_the_two_passwords_must_match(client, db, invited):
    response = choose(client, path_in(outbox()[0], "invitation"), NEW_PASSWORD, NEW_PASSWORD + "!")
    assert response.status_code == 422
    assert "Les deux mots de passe ne sont pas identiques." in body(response)


def test_the_policy_applies_to_the_cli_too(app, db):
    result = app.test_cli_runner().invoke(
        args=["users", "create", "a@place.example", "--role", "admin", "--password", "azertyuiop123"]
    )
    assert result.exit_code == 1
    assert "un mot de passe divulgué" in result.output
    assert db.session.scalar(select(User)) is None


def test_a_passphrase_is_accepted(db):
    from app.services.accounts.passwords import check_password

    check_password("vélo rouge tulipe orage", email="camille@cci.example", full_name="Camille Dupont")
    check_password("demo-support-2026", email="support@demo.place-des-entreprises.fr")


# ---------------------------------------------------------------- Have I Been Pwned adapter


def pwned_client(handler):
    from app.services.accounts.pwned_passwords import PwnedPasswordsClient

    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return PwnedPasswordsClient("https://pwned.example", timeout=1.5, transport=httpx.MockTransport(record)), seen


def recorded_range(request: httpx.Request) -> httpx.Response:
    prefix = request.url.path.rsplit("/", 1)[1]
    return httpx.Response(200, text=(PWNED_DATA / f"range_{prefix}.txt").read_text())


def test_the_range_api_is_asked_with_five_characters_only():
    client, seen = pwned_client(recorded_range)
    assert client.breach_count("correct horse battery staple") == 398
    assert client.breach_count(NEW_PASSWORD) == 0
    assert [r.url.path for r in seen] == ["/range/ABF7A", "/range/A469D"]
    assert seen[0].headers["add-padding"] == "true"
    assert "correct" not in str(seen[0].url) and "ABF7AAD6" not in str(seen[0].url)


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(503, text="Service Unavailable"),
        lambda request: httpx.Response(200, text="<html>maintenance</html>"),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("timed out", request=request)),
    ],
    ids=["503", "not-a-range", "timeout"],
)
def test_an_unavailable_api_fails_open_with_a_log_line(handler, caplog):
    client, _ = pwned_client(handler)
    with caplog.at_level(logging.WARNING, logger="app.services.accounts.pwned_passwords"):
        assert client.breach_count("correct horse battery staple") is None
    assert "liste locale seule" in caplog.text


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        prefix = self.path.rsplit("/", 1)[1]
        data = (PWNED_DATA / f"range_{prefix}.txt").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


@pytest.fixture
def range_server():
    """A real HTTP server on 127.0.0.1 answering the recorded ranges."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_with_the_api_on_a_breached_passphrase_is_refused(make_app, range_server):
    from app.services.accounts.passwords import PasswordRejected, check_password

    checking = make_app(PWNED_PASSWORDS_API=True, PWNED_PASSWORDS_API_URL=range_server)
    with checking.app_context():
        with pytest.raises(PasswordRejected, match="divulgués"):
            check_password("correct horse battery staple", email="a@b.example")
        check_password(NEW_PASSWORD, email="a@b.example")


def test_with_the_api_unreachable_the_offline_rules_decide(make_app, caplog):
    import socket

    from app.services.accounts.passwords import PasswordRejected, check_password

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    checking = make_app(PWNED_PASSWORDS_API=True, PWNED_PASSWORDS_API_URL=f"http://127.0.0.1:{closed}")
    with checking.app_context(), caplog.at_level(logging.WARNING):
        check_password("correct horse battery staple", email="a@b.example")
        with pytest.raises(PasswordRejected):
            check_password("qwerty123456", email="a@b.example")
    assert "Pwned Passwords injoignable" in caplog.text


# ---------------------------------------------------------------- password reset


def test_reset_answers_the_same_for_unknown_addresses_and_sends_nothing(client, db, admin_user):
    known = post_page(client, "/mot-de-passe-oublie", {"email": admin_user.email})
    unknown = post_page(client, "/mot-de-passe-oublie", {"email": "personne@place.example"})
    assert known.status_code == unknown.status_code == 200
    assert body(known) == body(unknown)
    assert "Si un compte existe pour cette adresse, un email vient de lui être envoyé." in body(known)
    assert [e.recipient for e in outbox()] == [admin_user.email]


def test_the_reset_link_works_once_and_ends_other_sessions(app, client, db, admin_user):
    other = app.test_client()
    assert login(other, admin_user.email).status_code == 302
    post_page(client, "/mot-de-passe-oublie", {"email": admin_user.email.upper()})
    (email,) = outbox("password-reset")
    assert email.key == f"user:{admin_user.id}:password-reset:1"
    assert "Réinitialisation de votre mot de passe" in email.subject and "1 heure" in email.body_text
    path = path_in(email, "mot-de-passe")

    assert choose(client, path, NEW_PASSWORD).status_code == 302
    assert client.get("/admin/").status_code == 200  # logged in by the link
    assert other.get("/admin/").status_code == 302  # the other session ended
    assert client.get(path).status_code == 404
    assert login(app.test_client(), admin_user.email, PASSWORD).status_code == 422
    assert login(app.test_client(), admin_user.email, NEW_PASSWORD).status_code == 302


def test_a_reset_link_expires_after_an_hour_and_dies_with_a_password_change(client, db, admin_user):
    from app.services.accounts.accounts import (
        ExpiredAccountLink,
        request_password_reset,
        reset_password,
        user_for_reset,
    )
    from app.services.accounts.users import set_password

    issued = utcnow()
    request_password_reset(admin_user.email, now=issued)
    token = path_in(outbox()[0], "mot-de-passe").rsplit("/", 1)[1]
    assert user_for_reset(token, now=issued + timedelta(minutes=59)).id == admin_user.id
    with pytest.raises(ExpiredAccountLink, match="expiré"):
        reset_password(token, NEW_PASSWORD, now=issued + timedelta(minutes=61))

    set_password(admin_user, "un-tout-autre-mot-de-passe")
    dead = client.get(f"/mot-de-passe/{token}")
    assert dead.status_code == 404 and "déjà servi" in body(dead)
    assert client.get("/mot-de-passe/pas-un-jeton").status_code == 404


def test_a_reset_lifts_a_lock(client, db, admin_user):
    from app.services.accounts.accounts import request_password_reset

    for _ in range(5):
        login(client, admin_user.email, "pas-le-bon-mot-de-passe")
    assert login(client, admin_user.email).status_code == 429  # this origin is locked out
    request_password_reset(admin_user.email)
    assert choose(client, path_in(outbox("password-reset")[0], "mot-de-passe"), NEW_PASSWORD).status_code == 302
    db.session.refresh(admin_user)
    assert admin_user.failed_logins == 0
    other = client.application.test_client()
    assert login(other, admin_user.email, NEW_PASSWORD).status_code == 302


def test_staff_send_a_reset_link_and_see_the_state(admin_client, db, cci):
    from app.services.accounts.users import create_user
    from tests.helpers import post_action

    user = create_user("actif@cci.example", role="referent", password=PASSWORD, institution_slug="cci-rhone")
    post_action(admin_client, "user", "lien_reinitialisation", [user.id])
    (email,) = outbox("password-reset")
    assert email.recipient == "actif@cci.example"
    assert "Référent de l'institution CCI Rhône" in email.body_text


def test_the_login_page_links_to_the_forgotten_password_page(client):
    page = body(client.get("/connexion"))
    assert 'href="/mot-de-passe-oublie"' in page and "Mot de passe oublié ?" in page


# ---------------------------------------------------------------- lockout and enumeration


def test_login_answers_the_same_for_unknown_addresses_wrong_passwords_and_locked_accounts(client, db, admin_user):
    unknown = login(client, "personne@place.example", "pas-le-bon-mot-de-passe")
    wrong = login(client, admin_user.email, "pas-le-bon-mot-de-passe")
    assert unknown.status_code == wrong.status_code == 422
    assert without_tokens(body(unknown), "personne@place.example") == without_tokens(body(wrong), admin_user.email)
    assert "Adresse email ou mot de passe incorrect." in body(wrong)

    for _ in range(4):
        login(client, admin_user.email, "pas-le-bon-mot-de-passe")
        login(client, "personne@place.example", "pas-le-bon-mot-de-passe")
    locked = login(client, admin_user.email, PASSWORD)  # the right password, from a locked origin
    unknown_locked = login(client, "personne@place.example", PASSWORD)
    assert locked.status_code == unknown_locked.status_code == 429
    assert without_tokens(body(locked), admin_user.email) == without_tokens(
        body(unknown_locked), "personne@place.example"
    )


def test_failures_lock_their_origin_only_and_unlock_after_the_delay(client, db, admin_user):
    """Finding 6 of the security review: anyone could lock any account. Five failures now lock
    the address for the origin they came from: the owner elsewhere still logs in, and is told."""
    from app.services.accounts.users import authenticate

    attacker = "203.0.113.66"
    for _ in range(5):
        assert authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=attacker) is None
    assert authenticate(admin_user.email, PASSWORD, origin=attacker) is None  # locked there
    assert authenticate(admin_user.email, PASSWORD, origin="198.51.100.7") == admin_user  # not elsewhere

    for _ in range(5):
        authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=attacker)
    locked_at = utcnow()
    assert authenticate(admin_user.email, PASSWORD, origin=attacker, now=locked_at + timedelta(minutes=14)) is None
    assert (
        authenticate(admin_user.email, PASSWORD, origin=attacker, now=locked_at + timedelta(minutes=16)) == admin_user
    )
    db.session.refresh(admin_user)
    assert admin_user.failed_logins == 0


def test_the_owner_is_told_by_email_once_an_hour(client, db, admin_user):
    from app.services.accounts.users import authenticate

    for n in range(10):
        authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=f"203.0.113.{n}")
    (warning,) = outbox("tentatives")
    assert warning.recipient == admin_user.email
    assert warning.subject == "Tentatives de connexion sur votre compte Place des Entreprises"
    assert "5 tentatives de connexion à votre compte Place des Entreprises ont échoué d'affilée" in warning.body_text


def test_failures_from_everywhere_slow_the_address_down(app, db, admin_user, monkeypatch):
    from app.services.accounts.users import authenticate, login_delay

    monkeypatch.setitem(app.config, "LOGIN_SLOWDOWN_SECONDS", 0.5)
    for n in range(5):
        authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=f"203.0.113.{n}")
    assert login_delay(admin_user.email) == 0.0
    for n in range(3):
        authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=f"198.51.100.{n}")
    assert login_delay(admin_user.email) == 1.5
    for n in range(20):
        authenticate(admin_user.email, "pas-le-bon-mot-de-passe", origin=f"192.0.2.{n}")
    assert login_delay(admin_user.email) == app.config["LOGIN_SLOWDOWN_MAX_SECONDS"]


def test_a_success_resets_the_count(client, db, admin_user):
    for _ in range(4):
        login(client, admin_user.email, "pas-le-bon-mot-de-passe")
    assert login(client, admin_user.email).status_code == 302
    db.session.refresh(admin_user)
    assert admin_user.failed_logins == 0


def test_staff_see_and_lift_a_lock(admin_client, app, db, cci):
    from app.services.accounts.users import create_user
    from tests.helpers import post_action

    user = create_user("bloque@cci.example", role="referent", password=PASSWORD, institution_slug="cci-rhone")
    for _ in range(5):
        login(app.test_client(), user.email, "pas-le-bon-mot-de-passe")
    assert "5 échecs de connexion consécutifs" in text(admin_client.get("/admin/user/"))
    assert login(app.test_client(), user.email).status_code == 429
    post_action(admin_client, "user", "deverrouiller", [user.id])
    db.session.refresh(user)
    assert user.failed_logins == 0
    assert login(app.test_client(), user.email).status_code == 302


@pytest.fixture
def limited(make_app):
    """An app with Flask-Limiter on (the conftest puts the shared limiter back afterwards)."""
    from app.extensions import limiter

    was_enabled = limiter.enabled
    other = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        LOGIN_RATE_LIMIT="100 per minute",
        PASSWORD_RESET_RATE_LIMIT="100 per minute",
    )
    try:
        yield other
    finally:
        limiter.reset()
        limiter.enabled = was_enabled


def test_too_many_attempts_on_any_address_get_the_same_429(limited, admin_user):
    answers = {}
    for address in (admin_user.email, "personne@place.example"):
        with limited.test_client() as client:
            statuses = [login(client, address, "pas-le-bon-mot-de-passe").status_code for _ in range(6)]
            answers[address] = (statuses, without_tokens(body(login(client, address, PASSWORD)), address))
    assert answers[admin_user.email] == answers["personne@place.example"]
    statuses, page = answers[admin_user.email]
    assert statuses == [422] * 4 + [429, 429]
    assert "Trop de tentatives : réessayez dans quelques minutes." in page


def test_staff_unlocking_also_clears_the_login_limit(limited, admin_user, db, cci):
    from app.services.accounts.users import create_user
    from tests.helpers import post_action

    with transaction():
        user = create_user("bloque@cci.example", role="referent", password=PASSWORD, institution_slug="cci-rhone")
    with limited.test_client() as client:
        for _ in range(5):
            login(client, user.email, "pas-le-bon-mot-de-passe")
        assert login(client, user.email).status_code == 429
    with limited.test_client() as staff:
        assert login(staff, admin_user.email).status_code == 302
        post_action(staff, "user", "deverrouiller", [user.id])
    with limited.test_client() as client:
        assert login(client, user.email).status_code == 302


def test_login_posts_are_limited_per_client_address(make_app, admin_user):
    from app.extensions import limiter

    was_enabled = limiter.enabled
    strict = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", LOGIN_RATE_LIMIT="3 per minute")
    try:
        with strict.test_client() as client:
            statuses = [login(client, f"a{n}@place.example", "pas-le-bon").status_code for n in range(4)]
        assert statuses == [422, 422, 422, 429]
    finally:
        limiter.reset()
        limiter.enabled = was_enabled


def test_reset_requests_are_limited_per_address_the_same_way(limited, admin_user):
    answers = {}
    for address in (admin_user.email, "personne@place.example"):
        with limited.test_client() as client:
            answers[address] = [
                post_page(client, "/mot-de-passe-oublie", {"email": address}).status_code for _ in range(4)
            ]
    assert answers[admin_user.email] == answers["personne@place.example"] == [200, 200, 200, 429]


# ---------------------------------------------------------------- sessions


def _age_session(client, **seconds_ago):
    from app.auth import LOGIN_AT, SEEN_AT

    keys = {"seen": SEEN_AT, "login": LOGIN_AT}
    with client.session_transaction() as session:
        for name, ago in seconds_ago.items():
            session[keys[name]] = int(time.time() - ago)


def test_a_session_ends_after_an_hour_idle(admin_client):
    _age_session(admin_client, seen=59 * 60)
    assert admin_client.get("/admin/").status_code == 200
    _age_session(admin_client, seen=61 * 60)
    response = admin_client.get("/admin/")
    assert response.status_code == 302 and "/connexion" in response.location
    assert "Votre session a expiré" in body(admin_client.get(response.location))


def test_a_session_ends_twelve_hours_after_login_even_when_active(admin_client):
    _age_session(admin_client, login=11 * 3600, seen=0)
    assert admin_client.get("/admin/").status_code == 200
    _age_session(admin_client, login=12 * 3600 + 60, seen=0)
    assert admin_client.get("/admin/").status_code == 302


def test_no_remember_me_cookie_and_a_protected_session_cookie(client, admin_user):
    response = login(client, admin_user.email)
    cookies = response.headers.getlist("Set-Cookie")
    assert not any(c.startswith("remember_token") for c in cookies)
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def test_production_cookies_are_secure():
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE and ProductionConfig.SESSION_COOKIE_HTTPONLY
    assert ProductionConfig.SESSION_COOKIE_SAMESITE == "Lax"


# ---------------------------------------------------------------- « Mon compte »


def test_a_referent_sees_their_role_and_scope(client, db, cci):
    from app.services.accounts.users import create_user

    antenne = AntenneFactory(institution=cci, name="CCI Villefranche")
    create_user("ref@cci.example", role="referent", password=PASSWORD, full_name="Lou Bernard", antenne_id=antenne.id)
    assert login(client, "ref@cci.example").status_code == 302
    page = body(client.get("/mon-compte"))
    assert "Lou Bernard" in page and "ref@cci.example" in page
    assert "Référent de l&#39;antenne CCI Villefranche (institution CCI Rhône)" in page
    assert client.get("/admin/").status_code == 200
    assert 'href="/mon-compte"' in body(client.get("/admin/"))


def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(app, admin_client, db, admin_user):
    other = app.test_client()
    assert login(other, admin_user.email).status_code == 302

    wrong = post_page(
        admin_client,
        "/mon-compte",
        {"current_password": "pas-le-bon", "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
    )
    assert wrong.status_code == 422 and "Mot de passe actuel incorrect." in body(wrong)
    weak = post_page(
        admin_client,
        "/mon-compte",
        {"current_password": PASSWORD, "password": "azertyuiop123", "confirmation": "azertyuiop123"},
    )
    assert weak.status_code == 422 and "un mot de passe divulgué" in body(weak)
    assert other.get("/admin/").status_code == 200

    done = post_page(
        admin_client,
        "/mon-compte",
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
    )
    assert done.status_code == 302
    assert admin_client.get("/mon-compte").status_code == 200  # this session stays
    assert other.get("/admin/").status_code == 302  # the other one ended
    assert login(app.test_client(), admin_user.email, NEW_PASSWORD).status_code == 302


def test_account_pages_are_not_cached_and_leak_no_referrer(client, db, invited):
    response = client.get(path_in(outbox()[0], "invitation"))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_mon_compte_needs_a_login(client):
    response = client.get("/mon-compte")
    assert response.status_code == 302 and "/connexion" in response.location


def test_the_demo_referent_logs_in(app, client, db):
    from app.services.seed import DEMO_REFERENT_EMAIL, DEMO_REFERENT_PASSWORD

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    assert login(client, DEMO_REFERENT_EMAIL, DEMO_REFERENT_PASSWORD).status_code == 302
    assert "Référent de l&#39;institution CCI France" in body(client.get("/mon-compte"))
