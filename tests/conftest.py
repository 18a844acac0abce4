"""Test fixtures: one schema per session, with the real territories and catalog loaded once.

PostgreSQL is used when it answers (always in CI, where its absence is a failure); on a
laptop without it, a SQLite file. Each test leaves no trace: the tables it may write are
emptied after it (territories stay), so pages served to a real browser from another thread
see committed data like in production.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text

from app import create_app
from app.extensions import db as _db

pytest_plugins = ["tests.plugins.mail", "tests.plugins.queue"]

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GEO_TABLES = {"regions", "departements", "epcis", "communes", "commune_postal_codes"}


def _postgres_available() -> bool:
    from sqlalchemy import create_engine

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        engine.dispose()


@contextmanager
def _test_database(tmp_path_factory) -> Iterator[str]:
    """Yield a database URL made for this run, and drop it afterwards."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    if _postgres_available():
        from sqlalchemy import create_engine

        name = f"pde_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    if IN_CI:
        pytest.fail("CI=true mais PostgreSQL ne répond pas sur 127.0.0.1:5432 : la suite doit tourner sur PostgreSQL.")
    yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    with _test_database(tmp_path_factory) as url:
        application = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with application.app_context():
            _db.create_all()
            from app.services.catalog import load_catalog
            from app.services.geo import load_territories

            load_territories(application.config["GEO_DATA_DIR"])
            load_catalog(application.config["CATALOG_DEFAULT_PATH"])
        yield application
        with application.app_context():
            _db.session.remove()
            _db.engine.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request):
    """Empty every non-territory table after each test and restore the default catalog."""
    yield
    if "app" not in request.fixturenames:
        return
    application = request.getfixturevalue("app")
    # Flask-Limiter keeps one switch and one counter store for every app of the process: a test
    # that built an app with limits on must not leave them on (or counted) for the next one.
    from app.extensions import limiter

    limiter.enabled = application.config["RATELIMIT_ENABLED"]
    with application.app_context():
        if getattr(limiter, "_storage", None) is not None:
            limiter.reset()
        _db.session.rollback()
        for table in reversed(_db.metadata.sorted_tables):
            if table.name not in GEO_TABLES:
                _db.session.execute(table.delete())
        _db.session.commit()
        from app.services.catalog import load_catalog

        load_catalog(application.config["CATALOG_DEFAULT_PATH"])
        _db.session.remove()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app
        _db.session.rollback()


@pytest.fixture
def db(app_ctx):
    return _db


@pytest.fixture
def client(app):
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def admin_user(db):
    from app.services.users import create_user

    return create_user(
        "support@place.example", role="admin", password="motdepasse-tres-long", full_name="Équipe support"
    )


def login(client, email: str, password: str = "motdepasse-tres-long"):
    """Log in through the real form, CSRF token included."""
    import re

    page = client.get("/connexion")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/connexion", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def admin_client(client, admin_user):
    response = login(client, admin_user.email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def referent_client(client, db):
    """A logged-in partner referent of institution ``bpi`` (refused by the back office for now)."""
    from app.services.users import create_user
    from tests.factories import InstitutionFactory

    InstitutionFactory(slug="bpi")
    create_user("referent@bpi.example", role="referent", institution_slug="bpi", password="motdepasse-tres-long")
    assert login(client, "referent@bpi.example").status_code == 302
    return client


def csrf_token_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, _conn, _cursor, statement, *_args) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app):
    """Count the SQL statements run inside a ``with count_queries() as counter:`` block."""

    @contextmanager
    def counting() -> Iterator[QueryCounter]:
        counter = QueryCounter()
        with app.app_context():
            engine = _db.engine
        event.listen(engine, "before_cursor_execute", counter)
        try:
            yield counter
        finally:
            event.remove(engine, "before_cursor_execute", counter)

    return counting


# ---------------------------------------------------------------- real browser

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def live_server(app):
    """The app served over HTTP from a thread, for the browser tests."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"Chromium introuvable ({CHROMIUM}) : .ci/run doit l'installer.")
        pytest.skip("Chromium absent sur ce poste (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="fr-FR")
    try:
        yield context.new_page()
    finally:
        context.close()


def axe_violations(page) -> list[str]:
    """RGAA-relevant axe-core violations of the page, as readable lines."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


@pytest.fixture
def make_app(app):
    """Build another app on the test database with some settings changed; its engine and
    Redis connections are closed afterwards."""
    made = []

    def build(**overrides):
        other = create_app("testing", SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"], **overrides)
        made.append(other)
        return other

    yield build
    for other in made:
        with other.app_context():
            _db.session.remove()
            _db.engine.dispose()
            for queue in other.extensions["rq"].queues.values():
                queue.connection.close()
