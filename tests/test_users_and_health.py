"""Staff accounts (CLI, hashing, login) and the health check against a real Redis."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from app.models import User
from tests.conftest import IN_CI
from tests.factories import InstitutionFactory
from tests.helpers import login


def test_users_create_cli_hashes_with_argon2(app, db):
    result = app.test_cli_runner().invoke(
        args=["users", "create", "Agent@Place.example", "--role", "admin", "--password", "un-mot-de-passe-long"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "agent@place.example"))
    assert user.role == "admin"
    assert user.password_hash.startswith("$argon2id$")
    assert "un-mot-de-passe-long" not in user.password_hash


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pas-une-adresse", "--role", "admin", "--password", "un-mot-de-passe-long"], "Adresse email invalide"),
        (["a@place.example", "--role", "admin", "--password", "court"], "au moins 12 caractères"),
        (["r@place.example", "--role", "referent", "--password", "un-mot-de-passe-long"], "rattaché à une institution"),
        (
            [
                "r@place.example",
                "--role",
                "referent",
                "--institution",
                "inconnue",
                "--password",
                "un-mot-de-passe-long",
            ],
            "Institution inconnue",
        ),
    ],
)
def test_users_create_cli_errors(app, db, args, message):
    result = app.test_cli_runner().invoke(args=["users", "create", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert db.session.scalar(select(User)) is None


def test_referent_gets_attached_to_its_institution(app, db):
    institution = InstitutionFactory(slug="cci-lyon")
    result = app.test_cli_runner().invoke(
        args=[
            "users",
            "create",
            "ref@cci.example",
            "--role",
            "referent",
            "--institution",
            "cci-lyon",
            "--password",
            "un-mot-de-passe-long",
        ]
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User).where(User.email == "ref@cci.example")).institution_id == institution.id
    duplicate = app.test_cli_runner().invoke(
        args=["users", "create", "REF@cci.example", "--role", "admin", "--password", "un-mot-de-passe-long"]
    )
    assert duplicate.exit_code == 1 and "existe déjà" in duplicate.output


def test_login_refuses_wrong_password_and_deleted_users(client, admin_user, db):
    response = login(client, admin_user.email, "pas-le-bon-mot-de-passe")
    assert response.status_code == 422
    assert "Adresse email ou mot de passe incorrect." in response.get_data(as_text=True)
    from app.services.accounts.users import delete_user

    delete_user(admin_user)
    assert login(client, "support@place.example").status_code == 422


def test_login_never_redirects_off_site(client, admin_user):
    from tests.helpers import csrf_token_from

    token = csrf_token_from(client.get("/connexion").get_data(as_text=True))
    response = client.post(
        "/connexion?next=//evil.example/",
        data={"email": admin_user.email, "password": "motdepasse-tres-long", "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.location == "/admin/"


def test_login_without_csrf_token_is_refused(client, admin_user):
    response = client.post("/connexion", data={"email": admin_user.email, "password": "motdepasse-tres-long"})
    assert response.status_code in (400, 422)
    assert client.get("/admin/").status_code == 302


def _redis_url() -> str | None:
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        return None
    return url


def test_healthz_with_a_real_redis(make_app):
    url = _redis_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI=true mais Redis ne répond pas sur 127.0.0.1:6379.")
        pytest.skip("Redis absent sur ce poste")
    real = make_app(
        RQ_CONNECTION=url,
        RQ_CONNECTION_CLASS="redis.Redis",
    )
    response = real.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "queue": "ok"}


def test_healthz_names_what_is_down(make_app):
    down = make_app(
        RQ_CONNECTION="redis://127.0.0.1:1/0",
        RQ_CONNECTION_CLASS="redis.Redis",
    )
    response = down.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["queue"] == "down"
    assert response.json["database"] == "ok"


def test_behind_a_trusted_proxy_the_visitor_address_is_used(make_app):
    from flask import request

    proxied = make_app(TRUSTED_PROXIES=1)
    with proxied.test_request_context(
        "/", headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "10.0.0.1"}
    ):
        proxied.wsgi_app(request.environ, lambda *a: None)
        assert request.environ["REMOTE_ADDR"] == "203.0.113.7"


def test_production_refuses_to_start_without_a_secret_key(monkeypatch):
    import pytest

    from app import create_app

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app("production", SECRET_KEY=None)


def test_production_refuses_to_start_without_redis():
    """Inline jobs and per-process rate limits are for a laptop, never for production."""
    import pytest

    from app import create_app

    with pytest.raises(RuntimeError, match="REDIS_URL"):
        create_app("production", SECRET_KEY="x" * 32, REDIS_URL=None)
    app = create_app("production", SECRET_KEY="x" * 32, REDIS_URL="redis://127.0.0.1:6379/0")
    assert app.config["ENV_NAME"] == "production"


def test_the_procfile_runs_every_process_in_production_by_default():
    from pathlib import Path

    lines = (Path(__file__).resolve().parent.parent / "Procfile").read_text().splitlines()
    assert {line.split(":", 1)[0] for line in lines} == {"release", "web", "worker", "cron"}
    assert all("APP_ENV=${APP_ENV:-production}" in line for line in lines)
