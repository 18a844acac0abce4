"""The committed Alembic migrations build exactly the schema the models describe,
on SQLite and on PostgreSQL, so ``flask db upgrade`` is the only way a schema is built."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db
from tests.conftest import IN_CI, PG_ADMIN_URL, _postgres_available


def _diff_after_upgrade(url: str) -> list:
    application = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    with application.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        downgrade(revision="base")
        with db.engine.connect() as connection:
            remaining = [name for name in db.inspect(connection).get_table_names() if name != "alembic_version"]
        db.engine.dispose()
    assert remaining == [], f"downgrade left tables: {remaining}"
    return diff


def test_migrations_match_models_on_sqlite(tmp_path):
    assert _diff_after_upgrade(f"sqlite:///{tmp_path / 'migrated.db'}") == []


def test_migrations_match_models_on_postgresql():
    if not _postgres_available():
        if IN_CI:
            pytest.fail("PostgreSQL est requis en CI.")
        pytest.skip("PostgreSQL absent sur ce poste")
    name = f"pde_migr_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        assert _diff_after_upgrade(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}") == []
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_cancel_reasons_are_read_from_the_notes_they_were_written_in(tmp_path):
    """The migration that adds ``cancel_reason`` fills it from the French note each canceled
    request carried (the last cancellation note wins; a reason typed by hand is « other »)."""
    import json

    url = f"sqlite:///{tmp_path / 'reasons.db'}"
    application = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    notes = {
        1: ["Sujet non aiguillable", "Abandonnée : spam"],
        2: ["Abandonnée : Hors du champ du service"],
        3: ["Abandonnée : PAS UNE ENTREPRISE"],
        4: ["Abandonnée : Demande incomplète", "Abandonnée : spam"],
        5: ["Abandonnée : le dirigeant a trouvé seul"],
        6: [],
    }
    with application.app_context():
        upgrade(revision="2a46543482d7")
        with db.engine.begin() as connection:
            for ident, rows in notes.items():
                connection.execute(
                    text(
                        "INSERT INTO solicitations (id, subject_id, status, full_name, email, phone, siret, postal_code,"
                        " insee_code, description, qualification_notes, created_at, updated_at, search_document)"
                        " VALUES (:id, 1, :status, 'A', 'a@b.fr', '+33612345678', '12345678200028', '69002', '69123',"
                        " 'x', :notes, '2026-01-01', '2026-01-01', '')"
                    ),
                    {"id": ident, "status": "canceled" if ident != 6 else "in_progress", "notes": json.dumps(rows)},
                )
        upgrade()
        with db.engine.connect() as connection:
            reasons = dict(connection.execute(text("SELECT id, cancel_reason FROM solicitations")).all())
        downgrade(revision="base")
        db.engine.dispose()
    assert reasons == {1: "spam", 2: "out_of_scope", 3: "not_a_company", 4: "spam", 5: "other", 6: None}
