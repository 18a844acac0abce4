"""The follow-up's daily run at ten times the national address book (``python -m bench.followup``).

The data is ``bench.lists``' (a million matches over three years, one need in six never taken,
statuses by age) with ``bench.routing``'s address book at full size: 100,000 experts. On the
first Tuesday after the data's « now » (so the weekly recap runs too), it measures:

- the plan (``flask followup run --dry-run``): time and peak Python memory, per step;
- the run itself: every due email rendered and written in one transaction, committed;
- a second run the same day (everything already written: nothing to send);
- the floor: the selections written by hand in SQL on a bare psycopg connection, which
  return the same number of rows and do nothing else;
- the relances desk's pages (needs and experts baskets, survey answers) as staff and as the
  referent of the largest institution, each opened five times (the first, and the median of
  the others), once the run has written its emails. A referent per institution and one per tenth
  antenne are added, so the referents' weekly list has its national share.

Jobs are enqueued on an in-memory Redis and never run: delivery is ``bench.delivery``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.lists import data_shape, drop_database, existing_shape, prepare
from bench.routing import _libpq_url, ensure_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pde_bench_followup"
RESULTS = Path(__file__).resolve().parent / "results" / "followup.json"
FULL_ADDRESSBOOK = 1.0  # bench.routing's: 100,000 experts, ten times today's

# The same rules as app/services/requests/followup.py, by hand: the floor of each selection.
FLOOR_SQL = {
    "suivi": """
        SELECT s.id FROM solicitations s
        WHERE s.status = 'processed' AND s.created_at <= %(now)s - interval '9 days'
          AND s.created_at > %(now)s - interval '45 days'
          AND NOT EXISTS (SELECT 1 FROM needs n WHERE n.solicitation_id = s.id
                          AND n.status IN ('taking_care', 'done', 'done_no_help', 'done_not_reachable'))
          AND EXISTS (SELECT 1 FROM needs n WHERE n.solicitation_id = s.id AND n.status = 'quo'
                      AND n.abandoned_at IS NULL)
          AND NOT EXISTS (SELECT 1 FROM outbound_emails e WHERE e.key = 'solicitation:' || s.id || ':suivi')""",
    "derniere-chance": """
        SELECT m.id FROM matches m JOIN needs n ON n.id = m.need_id JOIN experts x ON x.id = m.expert_id
        WHERE m.status = 'quo' AND n.status = 'quo' AND n.abandoned_at IS NULL
          AND m.created_at <= %(now)s - interval '21 days' AND m.created_at > %(now)s - interval '45 days'
          AND x.deleted_at IS NULL AND x.email IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM outbound_emails e WHERE e.key = 'match:' || m.id || ':derniere-chance')""",
    "echec": """
        SELECT n.id FROM needs n
        CROSS JOIN LATERAL (SELECT min(m.created_at) AS first FROM matches m WHERE m.need_id = n.id) f
        WHERE n.status = 'quo' AND n.abandoned_at IS NULL
          AND f.first <= %(now)s - interval '45 days' AND f.first > %(now)s - interval '59 days'""",
    "satisfaction": """
        SELECT n.id FROM needs n
        CROSS JOIN LATERAL (SELECT min(m.closed_at) AS first FROM matches m WHERE m.need_id = n.id
                            AND m.status = 'done') f
        WHERE f.first <= %(now)s - interval '10 days' AND f.first > %(now)s - interval '24 days'
          AND NOT EXISTS (SELECT 1 FROM outbound_emails e WHERE e.key = 'need:' || n.id || ':satisfaction')""",
    "experts-en-attente": """
        SELECT x.id, x.antenne_id, a.institution_id, count(*), min(m.created_at)
        FROM experts x JOIN matches m ON m.expert_id = x.id JOIN needs n ON n.id = m.need_id
        JOIN antennes a ON a.id = x.antenne_id
        WHERE m.status = 'quo' AND n.abandoned_at IS NULL
          AND m.created_at <= %(now)s - interval '9 days' AND m.created_at > %(now)s - interval '45 days'
          AND x.deleted_at IS NULL AND a.deleted_at IS NULL
        GROUP BY x.id, x.antenne_id, a.institution_id""",
    "recapitulatif": """
        SELECT DISTINCT m.expert_id FROM matches m JOIN needs n ON n.id = m.need_id JOIN experts x ON x.id = m.expert_id
        WHERE m.status = 'quo' AND n.abandoned_at IS NULL
          AND m.created_at <= %(now)s - interval '4 days' AND m.created_at > %(now)s - interval '45 days'
          AND x.deleted_at IS NULL AND x.email IS NOT NULL""",
}


# A fresh password each run, set on the bench's people (they may be kept from an earlier run).
PASSWORD = secrets.token_urlsafe(16)
DESK_PAGES = (
    "/admin/relances/besoins?panier=sans-reponse",
    "/admin/relances/besoins?panier=risque-abandon",
    "/admin/relances/besoins?panier=refuses",
    "/admin/relances/experts?panier=plus-de-5",
    "/admin/relances/experts?panier=2-a-5",
    "/admin/relances/experts?panier=apres-silence",
    "/admin/relances/avis",
)


def add_people(app) -> dict[str, str]:
    """A staff member, a referent per institution and one per tenth antenne (once: kept with
    ``--keep``); returns the emails of the staff member and of the largest institution's referent."""
    from sqlalchemy import func, select, update

    from app.extensions import db
    from app.models import Antenne, Expert, User
    from app.services.accounts.users import hash_password

    with app.app_context():
        existing = set(db.session.scalars(select(User.email).where(User.email.like("%@bench.example"))))
        password_hash = hash_password(PASSWORD)
        people = []
        if "staff@bench.example" not in existing:
            people.append(User(email="staff@bench.example", role="admin"))
        for institution_id in db.session.scalars(select(Antenne.institution_id).distinct()):
            email = f"ref-i{institution_id}@bench.example"
            if email not in existing:
                people.append(
                    User(email=email, role="referent", institution_id=institution_id, password_hash=password_hash)
                )
        for antenne_id, institution_id in db.session.execute(
            select(Antenne.id, Antenne.institution_id).order_by(Antenne.id)
        ).all()[::10]:
            email = f"ref-a{antenne_id}@bench.example"
            if email not in existing:
                people.append(User(email=email, role="referent", institution_id=institution_id, antenne_id=antenne_id))
        db.session.add_all(people)
        db.session.execute(update(User).where(User.email.like("%@bench.example")).values(password_hash=password_hash))
        largest = db.session.scalar(
            select(Antenne.institution_id)
            .join(Expert, Expert.antenne_id == Antenne.id)
            .group_by(Antenne.institution_id)
            .order_by(func.count().desc())
            .limit(1)
        )
        db.session.commit()
        db.session.remove()
    return {"staff": "staff@bench.example", "referent": f"ref-i{largest}@bench.example"}


def desk_timings(app, emails: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each desk page as staff and as the largest institution's referent: the first opening and
    the median of four more, in milliseconds, through the whole Flask stack."""
    timings = {}
    for role, email in emails.items():
        client = app.test_client()
        answer = client.post("/connexion", data={"email": email, "password": PASSWORD})
        assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
        for url in DESK_PAGES:
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                response = client.get(url)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, (url, response.status_code)
            timings[f"{role} {url.removeprefix('/admin/relances/')}"] = {
                "first_ms": round(seconds[0] * 1000, 1),
                "median_ms": round(statistics.median(seconds[1:]) * 1000, 1),
            }
    return timings


def next_tuesday(moment: datetime) -> datetime:
    days = (1 - moment.weekday()) % 7
    return (moment + timedelta(days=days)).replace(hour=6, minute=10, second=0, microsecond=0)


def timed(function):
    """Seconds, and the growth of the process's peak resident memory (tracemalloc would slow
    the run it measures three- or fourfold)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return result, round(seconds, 2), round(grown / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Le suivi quotidien à dix fois l'échelle nationale.")
    parser.add_argument("--keep", action="store_true", help="garde la base (et la réutilise au prochain --keep)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction du volume (1.0 : un million de MER)")
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_FOLLOWUP_DATABASE_URL", DEFAULT_URL)
    reuse = args.keep and existing_shape(url) == data_shape(args.scale, FULL_ADDRESSBOOK)
    if not reuse:
        drop_database(url)
    ensure_database(url)

    from app import create_app
    from app.extensions import db
    from app.services.requests.followup import run_followup
    from app.services.transactions import transaction

    # Jobs go to an in-memory Redis and stay there: this measures the follow-up, not delivery.
    app = create_app(
        "development",
        SQLALCHEMY_DATABASE_URI=url,
        RQ_ASYNC=True,
        RQ_CONNECTION_CLASS="fakeredis.FakeRedis",
        # The desk's pages are read by a test client: no form is posted but the login.
        WTF_CSRF_ENABLED=False,
        RATELIMIT_ENABLED=False,
    )
    try:
        counts = prepare(app, url, args.scale, FULL_ADDRESSBOOK, reuse=reuse)
        people = add_people(app)
        with psycopg.connect(_libpq_url(url)) as conn:
            data_now = conn.execute("SELECT max(created_at) FROM matches").fetchone()[0]
            conn.execute(
                "DELETE FROM outbound_emails WHERE key LIKE '%:suivi' OR key LIKE '%:derniere-chance'"
                " OR key LIKE '%:echec' OR key LIKE '%:recapitulatif:%' OR key LIKE '%:experts-en-attente:%'"
                " OR key LIKE '%:satisfaction'"
            )
            conn.execute("UPDATE needs SET abandoned_at = NULL WHERE abandoned_at IS NOT NULL")
            conn.commit()
        now = next_tuesday(data_now.astimezone(UTC))
        print(f"volumes : {counts}\nmoment simulé : {now.isoformat()}")

        floor = {}
        with psycopg.connect(_libpq_url(url)) as conn:
            for step, sql in FLOOR_SQL.items():
                started = time.perf_counter()
                rows = conn.execute(sql, {"now": now}).fetchall()
                floor[step] = {"rows": len(rows), "seconds": round(time.perf_counter() - started, 2)}
        floor_seconds = round(sum(item["seconds"] for item in floor.values()), 2)

        with app.app_context():
            plan, plan_seconds, plan_mib = timed(lambda: run_followup(now, dry_run=True))
            planned = Counter(item.step for item in plan)
            db.session.rollback()

            def run_once():
                with transaction():
                    return run_followup(now)

            sent, run_seconds, run_mib = timed(run_once)
            again, again_seconds, again_mib = timed(run_once)
            db.session.remove()
        # The desk reads the real clock: its baskets are those of the data's « now » (the data
        # was generated up to today).
        desk = desk_timings(app, people)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if not args.keep:
            drop_database(url)

    result = {
        "now": now.isoformat(),
        "dataset": counts,
        "planned": dict(planned),
        "floor_sql": floor,
        "floor_seconds": floor_seconds,
        "plan": {"seconds": plan_seconds, "peak_rss_growth_mib": plan_mib},
        "run": {"emails": len(sent), "seconds": run_seconds, "peak_rss_growth_mib": run_mib},
        "second_run": {"emails": len(again), "seconds": again_seconds, "peak_rss_growth_mib": again_mib},
        "ratio_plan_over_floor": round(plan_seconds / floor_seconds, 1) if floor_seconds else None,
        "ms_per_email": round(run_seconds * 1000 / len(sent), 2) if sent else None,
        "desk_pages": desk,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    for step, item in floor.items():
        # The recap and the referents' list count recipients, their floors the experts concerned.
        if item["rows"] != planned.get(step, 0) and step not in ("recapitulatif", "experts-en-attente"):
            print(f"écart {step} : plancher {item['rows']}, plan {planned.get(step, 0)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
