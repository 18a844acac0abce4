"""The follow-up's daily run at ten times the national address book (``python -m bench.followup``).

The data is ``bench.lists``' (a million matches over three years, one need in six never taken,
statuses by age) with ``bench.routing``'s address book at full size: 100,000 experts. On the
first Tuesday after the data's « now » (so the weekly recap runs too), it measures:

- the plan (``flask followup run --dry-run``): time and peak Python memory, per step;
- the run itself: every due email rendered and written in one transaction, committed;
- a second run the same day (everything already written: nothing to send);
- the floor: the five selections written by hand in SQL on a bare psycopg connection, which
  return the same number of rows and do nothing else.

Jobs are enqueued on an in-memory Redis and never run: delivery is ``bench.delivery``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
    "recapitulatif": """
        SELECT DISTINCT m.expert_id FROM matches m JOIN needs n ON n.id = m.need_id JOIN experts x ON x.id = m.expert_id
        WHERE m.status = 'quo' AND n.abandoned_at IS NULL
          AND m.created_at <= %(now)s - interval '4 days' AND m.created_at > %(now)s - interval '45 days'
          AND x.deleted_at IS NULL AND x.email IS NOT NULL""",
}


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
        "development", SQLALCHEMY_DATABASE_URI=url, RQ_ASYNC=True, RQ_CONNECTION_CLASS="fakeredis.FakeRedis"
    )
    try:
        counts = prepare(app, url, args.scale, FULL_ADDRESSBOOK, reuse=reuse)
        with psycopg.connect(_libpq_url(url)) as conn:
            data_now = conn.execute("SELECT max(created_at) FROM matches").fetchone()[0]
            conn.execute(
                "DELETE FROM outbound_emails WHERE key LIKE '%:suivi' OR key LIKE '%:derniere-chance'"
                " OR key LIKE '%:echec' OR key LIKE '%:recapitulatif:%'"
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
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    for step, item in floor.items():
        if item["rows"] != planned.get(step, 0) and step != "recapitulatif":
            print(f"écart {step} : plancher {item['rows']}, plan {planned.get(step, 0)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
