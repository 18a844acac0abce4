"""The public statistics at national volume (issue 15): 400,000 needs and 1,000,000 matches.

Reuses the data of ``bench.lists`` (same generator, same database; ``--keep`` keeps it for the
next run of either), then measures:

* the nightly refresh of the aggregates (``services.statistics.aggregates.refresh``), beside
  its floor: the needs' per-month counts computed by PostgreSQL in one hand-written statement
  (what the database costs to read every need and its matches once);
* ``/stats`` through the Flask test client, ``--requests`` times with varied filters (région,
  theme, period): **cold** (a new database connection for each request, as after a restart)
  and **warm** (the same connection), and ``/stats.csv`` warm.

Usage: ``python -m bench.stats [--requests 40] [--keep] [--scale 1.0]``. Results go to
``bench/results/stats.json``. Target: the page's p95 under 200 ms, cold and warm.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import psycopg

from bench import lists

RESULTS = Path(__file__).resolve().parent / "results" / "stats.json"
TARGET_P95_MS = 200.0
SEED = 20261203

FLOOR_SQL = """
SELECT date_trunc('month', n.created_at AT TIME ZONE 'Europe/Paris') AS month, c.region_code, s.theme_id,
       count(*), sum(m.exchanged), sum(m.helped)
FROM needs n
JOIN facilities f ON f.id = n.facility_id
JOIN communes c ON c.code = f.commune_code
JOIN subjects s ON s.id = n.subject_id
LEFT JOIN (
    SELECT need_id,
           max(CASE WHEN status IN ('done', 'done_no_help') THEN 1 ELSE 0 END) AS exchanged,
           max(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS helped
    FROM matches GROUP BY need_id
) m ON m.need_id = n.id
GROUP BY 1, 2, 3
"""


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "max": round(max(samples), 1)}


def _urls(rng: random.Random, count: int, regions: list[str], themes: list[str]) -> list[str]:
    urls = []
    for index in range(count):
        args = []
        if index % 3 == 1:
            args.append(f"region={rng.choice(regions)}")
        if index % 4 == 2:
            args.append(f"theme={rng.choice(themes)}")
        if index % 5 == 3:
            end_year = rng.choice([2024, 2025])
            args.append(f"debut={end_year}-01&fin={end_year}-12")
        urls.append("/stats" + ("?" + "&".join(args) if args else ""))
    return urls


REPORT_FLOOR_SQL = """
SELECT m.created_at, m.status, m.taken_care_at, m.closed_at, x.full_name, s.label, f.siret, f.commune_code
FROM matches m JOIN experts x ON x.id = m.expert_id JOIN antennes a ON a.id = x.antenne_id
JOIN needs n ON n.id = m.need_id JOIN subjects s ON s.id = n.subject_id JOIN facilities f ON f.id = n.facility_id
WHERE a.institution_id = %(institution)s AND m.created_at >= %(start)s AND m.created_at < %(end)s
"""


def _dashboards(app, url: str, count: int) -> tuple[dict[str, dict], dict]:
    """The other figures people wait on: the staff home (twelve weeks, funnel, map), the
    referent's home of the busiest institution (its dashboard over three months and over a
    year), and that institution's quarterly report beside its floor (reading its matches)."""
    import secrets

    from app.extensions import db
    from app.models import Institution
    from app.services.accounts.users import create_user
    from app.services.statistics.reports import build_reports, parse_quarter
    from app.services.transactions import transaction

    password = secrets.token_urlsafe(24)
    with app.app_context():
        busiest = db.session.execute(
            db.text(
                "SELECT a.institution_id, count(*) FROM matches m JOIN experts x ON x.id = m.expert_id "
                "JOIN antennes a ON a.id = x.antenne_id GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
            )
        ).one()
        institution = db.session.get(Institution, busiest[0])
        slug = institution.slug
        tag = secrets.token_hex(4)
        create_user(f"staff-{tag}@place.example", role="admin", password=password)
        create_user(f"ref-{tag}@place.example", role="referent", institution_slug=slug, password=password)
        db.session.commit()
        last = db.session.scalar(db.text("SELECT max(created_at) FROM matches"))
    quarter = f"{last.year}-Q{(last.month - 1) // 3 + 1}"
    _period, first, after = parse_quarter(quarter)
    results: dict[str, dict] = {}
    for who, pages in (
        ("staff", {"accueil équipe (12 semaines, carte)": "/admin/"}),
        (
            "ref",
            {
                "accueil référent, 3 mois": "/admin/",
                "accueil référent, 12 mois": f"/admin/?debut={last.year - 1}-{last.month:02d}&fin={last:%Y-%m}",
            },
        ),
    ):
        with app.test_client() as client:
            lists._login(client, f"{who}-{tag}@place.example", password)
            for label, path in pages.items():
                samples = []
                for index in range(count + 3):
                    started = time.perf_counter()
                    response = client.get(path)
                    if response.status_code != 200:
                        raise SystemExit(f"{path} : {response.status_code}")
                    if index >= 3:
                        samples.append((time.perf_counter() - started) * 1000)
                results[label] = _percentiles(samples)
    with app.app_context():
        started = time.perf_counter()
        with transaction():
            built = build_reports(quarter, slug)
        report_s = time.perf_counter() - started
    with psycopg.connect(lists._libpq_url(url)) as conn:
        started = time.perf_counter()
        rows = conn.execute(REPORT_FLOOR_SQL, {"institution": busiest[0], "start": first, "end": after}).fetchall()
        floor_s = time.perf_counter() - started
    report = {
        "quarter": quarter,
        "files": len(built.built),
        "matches": len(rows),
        "seconds": round(report_s, 2),
        "floor_seconds": round(floor_s, 2),
    }
    return results, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Statistiques publiques à l'échelle nationale.")
    parser.add_argument("--requests", type=int, default=40, help="pages mesurées par mode")
    parser.add_argument("--keep", action="store_true", help="garde la base (partagée avec bench.lists)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction du volume (1.0 : 400 000 besoins)")
    args = parser.parse_args(argv)
    book = lists.NATIONAL_ADDRESSBOOK

    url = os.environ.get("BENCH_LISTS_DATABASE_URL", lists.DEFAULT_URL)
    reuse = args.keep and lists.existing_shape(url) == lists.data_shape(args.scale, book)
    if not reuse:
        lists.drop_database(url)
    lists.ensure_database(url)
    from app import create_app
    from app.extensions import db
    from app.services.statistics.aggregates import refresh
    from app.services.transactions import transaction

    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, RATELIMIT_ENABLED=False)
    try:
        counts = lists.prepare(app, url, args.scale, book, reuse=reuse)
        with app.app_context():
            db.create_all()  # the aggregates' tables, on a database kept from before they existed
            started = time.perf_counter()
            with transaction():
                report = refresh()
            refresh_s = time.perf_counter() - started
            regions = [r[0] for r in db.session.execute(db.text("SELECT code FROM regions ORDER BY code"))]
            themes = [r[0] for r in db.session.execute(db.text("SELECT slug FROM themes ORDER BY id"))]
        with psycopg.connect(lists._libpq_url(url)) as conn:
            started = time.perf_counter()
            conn.execute(FLOOR_SQL).fetchall()
            floor_s = time.perf_counter() - started
        print(f"agrégats : {report.lines()} ; plancher SQL {floor_s:.1f} s")

        urls = _urls(random.Random(SEED), args.requests, regions, themes)
        results: dict[str, dict] = {}
        with app.test_client() as client:
            for mode in ("froid", "chaud", "csv chaud"):
                samples = []
                for path in urls:
                    target = path.replace("/stats", "/stats.csv", 1) if mode == "csv chaud" else path
                    if mode == "froid":
                        with app.app_context():
                            db.engine.dispose()
                    else:
                        client.get(target)  # warm: the same page once before
                    started = time.perf_counter()
                    response = client.get(target)
                    samples.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{target} : {response.status_code}")
                results[mode] = _percentiles(samples)
        dashboards, report_info = _dashboards(app, url, args.requests)
        results |= dashboards
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if not args.keep:
            lists.drop_database(url)

    met = all(row["p95"] < TARGET_P95_MS for row in results.values())
    out = io.StringIO()
    out.write(f"\nStatistiques publiques — volumes : {counts}\n")
    out.write(f"rafraîchissement des agrégats : {refresh_s:.1f} s ({report.cells} cellules) ; ")
    out.write(f"plancher (une requête SQL d'agrégation) : {floor_s:.1f} s\n\n")
    out.write(f"{'page':20}{'p50':>9}{'p95':>9}{'max':>9}  (ms)\n")
    for mode, row in results.items():
        out.write(f"{mode:20}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['max']:>9.1f}\n")
    out.write(
        f"\nrapport {report_info['quarter']} de l'institution la plus chargée ({report_info['files']} fichiers, "
        f"{report_info['matches']} mises en relation) : {report_info['seconds']} s ; plancher (lecture SQL de ses "
        f"mises en relation) : {report_info['floor_seconds']} s\n"
    )
    out.write(f"\ncible : p95 < {TARGET_P95_MS:.0f} ms, froid et chaud → {'atteinte' if met else 'non atteinte'}\n")
    print(out.getvalue())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "dataset": counts,
                "refresh_seconds": round(refresh_s, 2),
                "refresh_floor_seconds": round(floor_s, 2),
                "cells": report.cells,
                "pages_ms": results,
                "quarterly_report": report_info,
                "target_p95_ms": TARGET_P95_MS,
                "meets_target": met,
                "python": platform.python_version(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
