"""Public pages (no account): the catalog home page and the health check."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from sqlalchemy import select, text

from app.extensions import db
from app.models import Subject, Theme

bp = Blueprint("public", __name__)


@bp.route("/")
def index():
    themes = db.session.scalars(
        select(Theme).where(Theme.archived_at.is_(None)).order_by(Theme.position, Theme.label)
    ).all()
    subjects = db.session.scalars(
        select(Subject).where(Subject.archived_at.is_(None)).order_by(Subject.position, Subject.label)
    ).all()
    by_theme: dict[int, list[Subject]] = {}
    for subject in subjects:
        by_theme.setdefault(subject.theme_id, []).append(subject)
    return render_template("public/index.html", themes=themes, by_theme=by_theme)


@bp.route("/healthz")
def healthz():
    from app.extensions import rq

    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 - any failure means "down" to the load balancer
        db.session.rollback()
        checks["database"] = "down"
    try:
        rq.queue.connection.ping()
        checks["queue"] = "ok"
    except Exception:  # noqa: BLE001
        checks["queue"] = "down"
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "down", **checks), 200 if healthy else 503
