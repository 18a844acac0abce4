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
from app.services.transactions import transaction
from tests.helpers import login

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
            from app.services.reference.catalog import load_catalog
            from app.services.reference.geo import load_territories

            with transaction():
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
        from app.services.reference.catalog import load_catalog

        with transaction():
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
    from app.services.accounts.users import create_user

    with transaction():
        return create_user(
            "support@place.example", role="admin", password="motdepasse-tres-long", full_name="Équipe support"
        )


@pytest.fixture
def admin_client(client, admin_user):
    response = login(client, admin_user.email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def referent_client(client, db):
    """A logged-in partner referent of institution ``bpi`` (refused by the back office for now)."""
    from app.services.accounts.users import create_user
    from tests.factories import InstitutionFactory

    InstitutionFactory(slug="bpi")
    with transaction():
        create_user("referent@bpi.example", role="referent", institution_slug="bpi", password="motdepasse-tres-long")
    assert login(client, "referent@bpi.example").status_code == 302
    return client


# ---------------------------------------------------------------- partner referents' scope


class ScopeWorld:
    """Two institutions for the scope tests, every name tagged so a leak is easy to spot.

    Institution « Alpha Conseil » has antenne « Alpha Lyon » (expert Alice Alpha, need of
    « Alpha Boulangerie ») and antenne « Quetzal Grenoble » (expert Quentin Quetzal, need of
    « Quetzal Menuiserie »); institution « Zorglub Partenaires » has « Zorglub Paris » (expert
    Zoé Zorglub, need of « Zorglub Garage »). ``ids[Model]`` maps ``"A1"`` (Alpha Lyon's side),
    ``"A2"`` (Quetzal Grenoble's side) and ``"B"`` (Zorglub's) to record ids. The institution
    referent sees A1 and A2 (never « zorglub »); the antenne referent, of Alpha Lyon, sees A1
    only (never « zorglub » nor « quetzal »).
    """

    password = "motdepasse-tres-long"

    def __init__(self) -> None:
        self.ids: dict[type, dict[str, int]] = {}


def _build_scope_world(db) -> ScopeWorld:
    from app.models import (
        Antenne,
        Commune,
        Company,
        Contact,
        Expert,
        Facility,
        Institution,
        InstitutionSubject,
        Match,
        Need,
    )
    from app.services.accounts.users import create_user
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, subject, zone

    world = ScopeWorld()
    alpha = InstitutionFactory(name="Alpha Conseil", slug="alpha-conseil")
    zorglub = InstitutionFactory(name="Zorglub Partenaires", slug="zorglub-partenaires")
    sides = {
        "A1": (
            alpha,
            "Alpha Lyon",
            "departement:69",
            "Alice Alpha",
            "alice@alpha.example",
            "Alpha Boulangerie",
            "69123",
        ),
        "A2": (
            alpha,
            "Quetzal Grenoble",
            "departement:38",
            "Quentin Quetzal",
            "quentin@quetzal.example",
            "Quetzal Menuiserie",
            "38185",
        ),
        "B": (
            zorglub,
            "Zorglub Paris",
            "departement:75",
            "Zoé Zorglub",
            "zoe@zorglub.example",
            "Zorglub Garage",
            "75056",
        ),
    }
    for number, (side, (institution, antenne_name, area, expert_name, email, company_name, insee)) in enumerate(
        sides.items(), start=1
    ):
        antenne = AntenneFactory(institution=institution, name=antenne_name)
        zone(antenne, area)
        expert = ExpertFactory(antenne=antenne, full_name=expert_name, email=email)
        link = offer(expert, "recrutement")
        company = Company(siren=f"{number}00000000"[:9], name=company_name)
        need = Need(
            subject=subject("recrutement"),
            facility=Facility(
                company=company, siret=f"{number}0000000000017"[:14], commune=db.session.get(Commune, insee)
            ),
            contact=Contact(
                company=company,
                full_name=f"Contact {company_name}",
                email=f"contact@{company_name.split()[0].lower()}.example",
                phone="06 12 34 56 78",
            ),
            description=f"Besoin de {company_name} : recruter un apprenti.",
        )
        match = Match(need=need, expert=expert, status="quo", zone=area, zone_owner="antenne")
        db.session.add_all([need, match])
        db.session.commit()
        for model, record in (
            (Institution, institution),
            (Antenne, antenne),
            (Expert, expert),
            (InstitutionSubject, link.institution_subject),
            (Need, need),
            (Match, match),
        ):
            world.ids.setdefault(model, {})[side] = record.id
    with transaction():
        world.institution_referent = create_user(
            "referente@alpha.example",
            role="referent",
            institution_slug="alpha-conseil",
            password=world.password,
            full_name="Rita Référente",
        )
        world.antenne_referent = create_user(
            "referent@alpha-lyon.example",
            role="referent",
            antenne_id=world.ids[Antenne]["A1"],
            password=world.password,
            full_name="Rémi Référent",
        )
    world.alpha, world.zorglub = alpha, zorglub
    return world


@pytest.fixture
def scope_world(db, admin_user) -> ScopeWorld:
    """Institutions Alpha and Zorglub with their antennes, experts, needs and matches, a staff
    member (``admin_user``), a referent of Alpha and a referent of its antenne Alpha Lyon."""
    world = _build_scope_world(db)
    world.staff = admin_user
    return world


@pytest.fixture
def logged_in(app):
    """``logged_in(user)``: a new test client with ``user`` logged in (``None``: anonymous), so
    one test can compare what several roles get."""

    def make(user=None, password: str = "motdepasse-tres-long"):
        test_client = app.test_client()
        if user is not None:
            response = login(test_client, user.email, password)
            assert response.status_code == 302, response.get_data(as_text=True)
        return test_client

    return make


@pytest.fixture
def institution_referent_client(scope_world, logged_in):
    """A logged-in referent of institution « Alpha Conseil » (see ``scope_world``)."""
    return logged_in(scope_world.institution_referent)


@pytest.fixture
def antenne_referent_client(scope_world, logged_in):
    """A logged-in referent of antenne « Alpha Lyon » of « Alpha Conseil » (see ``scope_world``)."""
    return logged_in(scope_world.antenne_referent)


# ---------------------------------------------------------------- the address books tests share


@pytest.fixture
def book(db):
    """The routing world: two institutions cover the Rhône for recruitment, so every need
    routed in Lyon gets two matches — Camille Martin (CCI Lyon Métropole, antenne « CCI Lyon —
    Centre ») and Dominique Petit (France Travail, antenne « France Travail — Rhône »)."""
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, zone

    cci = InstitutionFactory(name="CCI Lyon Métropole", slug="cci-lyon-metropole")
    antenne = AntenneFactory(institution=cci, name="CCI Lyon — Centre")
    zone(antenne, "departement:69")
    camille = ExpertFactory(antenne=antenne, full_name="Camille Martin", email="camille@cci.example")
    offer(camille, "recrutement")
    ft = AntenneFactory(institution=InstitutionFactory(name="France Travail"), name="France Travail — Rhône")
    zone(ft, "departement:69")
    dominique = ExpertFactory(antenne=ft, full_name="Dominique Petit")
    offer(dominique, "recrutement")
    return {"institution": cci, "antenne": antenne, "expert": camille, "experts": [camille, dominique]}


@pytest.fixture
def desk_book(db):
    """The desk's world, who covers Lyon: Alice (CCI, by the antenne's département) and Bruno
    (national) for recruitment; Chloé (OPCO, her own zone: the Rhône) for training; Denis in
    Marseille for both, outside the rule; Eve deleted."""
    from app.models.base import utcnow
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, zone

    cci = InstitutionFactory(name="CCI Lyon Métropole")
    rhone = AntenneFactory(institution=cci, name="CCI — Rhône")
    zone(rhone, "departement:69")
    alice = ExpertFactory(antenne=rhone, full_name="Alice CCI", email="alice@cci.example")
    offer(alice, "recrutement")
    national = AntenneFactory(institution=InstitutionFactory(name="France Travail"), name="France Travail — national")
    zone(national, "national")
    bruno = ExpertFactory(antenne=national, full_name="Bruno FT", email="bruno@ft.example")
    offer(bruno, "recrutement")
    opco = AntenneFactory(institution=InstitutionFactory(name="OPCO EP"), name="OPCO — Auvergne-Rhône-Alpes")
    zone(opco, "region:84")
    chloe = ExpertFactory(antenne=opco, full_name="Chloé OPCO", email="chloe@opco.example")
    zone(chloe, "departement:69")
    offer(chloe, "formation")
    south = AntenneFactory(institution=cci, name="CCI — Bouches-du-Rhône")
    zone(south, "departement:13")
    denis = ExpertFactory(antenne=south, full_name="Denis Marseille", email="denis@cci.example")
    offer(denis, "recrutement")
    offer(denis, "formation")
    eve = ExpertFactory(antenne=rhone, full_name="Eve Partie", email="eve@cci.example")
    offer(eve, "recrutement")
    eve.deleted_at = utcnow()
    eve.email = None
    db.session.commit()
    return {"alice": alice, "bruno": bruno, "chloe": chloe, "denis": denis, "eve": eve}


@pytest.fixture
def domain(app, monkeypatch):
    """Replies by email switched on, on the test domain."""
    from tests.helpers import INBOUND_DOMAIN

    monkeypatch.setitem(app.config, "INBOUND_EMAIL_DOMAIN", INBOUND_DOMAIN)
    return INBOUND_DOMAIN


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

    def buffered(environ, start_response):
        """Each response read whole and closed before it is written: a browser that leaves a
        page while a static file is on its way would otherwise leave that file open, and the
        warning would fail whichever test runs next."""
        result = app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    server = make_server("127.0.0.1", 0, buffered, threaded=True)
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
