"""The floor of the form benchmark: a bare Flask endpoint that stores a POST with one INSERT.

Served by gunicorn with the same worker count as the application (``bench/form.py`` starts
both), on the same database, it answers like the real form (a 303 to a confirmation) after
one autocommitted INSERT through psycopg: what HTTP, the WSGI server, Flask's form parsing and
one database round trip cost, with nothing of the service around them. The ratio of the two
rates is what the service's own work (validation, CSRF, session, qualification, routing, the
need, its matches and their emails) costs on top of that floor.

The database comes from ``BENCH_BARE_DSN`` (a libpq URL); one connection per worker, opened
on the first request, after gunicorn has forked.
"""

from __future__ import annotations

import os

import psycopg
from flask import Flask, request

TABLE = "bench_bare_inserts"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    full_name varchar(200) NOT NULL,
    email varchar(254) NOT NULL,
    siret varchar(14) NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = f"INSERT INTO {TABLE} (full_name, email, siret, description) VALUES (%s, %s, %s, %s)"

app = Flask(__name__)
_connection: psycopg.Connection | None = None


def _conn() -> psycopg.Connection:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_BARE_DSN"], autocommit=True)
    return _connection


@app.get("/")
def ready():
    return "ok"


@app.post("/")
def store():
    form = request.form
    _conn().execute(
        INSERT, (form.get("full_name", ""), form.get("email", ""), form.get("siret", ""), form.get("description", ""))
    )
    return "", 303, {"Location": "/merci"}
