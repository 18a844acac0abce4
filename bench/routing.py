"""Routing latency at ten times the national scale (zones are never expanded to communes: it must stay fast).

Builds (once; ``--regenerate`` to rebuild) an address book of 400 institutions, 5,000
antennes and 100,000 experts with zones at every level, then times, over random
(subject, commune) pairs weighted by population:

* ``service``: :func:`app.services.addressbook.routing.find_experts`, the whole call (commune look-up
  included), through the SQLAlchemy session as the application runs it;
* ``floor``: the same two statements written by hand and run through psycopg directly —
  what the database and the driver cost, with no ORM around them.

Usage: ``python -m bench.routing [--pairs 2000] [--regenerate]``; the database comes from
``BENCH_DATABASE_URL`` (created when missing). Results go to ``bench/results/routing.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pde_bench"
RESULTS = Path(__file__).resolve().parent / "results" / "routing.json"
SEED = 20260127
SCALE = {"institutions": 400, "antennes": 5_000, "experts": 100_000}
TARGET_P95_MS = 5.0
TARGET_RATIO = 1.5

# The rule of app/services/routing.py, written by hand: the floor the service is held to.
FLOOR_COMMUNE_SQL = "SELECT code, epci_code, departement_code, region_code FROM communes WHERE code = %s"
_TERRITORY = """(SELECT 'commune' AS kind, %(commune)s::varchar AS code UNION ALL SELECT 'epci', %(epci)s::varchar
        UNION ALL SELECT 'departement', %(departement)s::varchar UNION ALL SELECT 'region', %(region)s::varchar) t
        JOIN zones z ON z.kind = t.kind AND z.code = t.code"""
_COLUMNS = (
    "x.id, x.full_name, x.email, n.id AS antenne_id, n.name AS antenne, i.id AS institution_id, i.name AS institution"
)
_OFFERED = (
    "JOIN institutions i ON i.id = n.institution_id "
    "JOIN institution_subjects s ON s.institution_id = n.institution_id AND s.subject_id = %(subject)s"
)
_LIVE = "x.deleted_at IS NULL AND n.deleted_at IS NULL AND i.deleted_at IS NULL"
_NO_OWN_ZONE = "NOT x.national AND NOT EXISTS (SELECT 1 FROM zones o WHERE o.expert_id = x.id)"
FLOOR_ROUTING_SQL = f"""
SELECT c.id, c.full_name, c.email, c.antenne_id, c.antenne, c.institution_id, c.institution, c.kind, c.code, c.owner
FROM (
    SELECT {_COLUMNS}, e.kind, e.code, 'expert' AS owner, s.id AS offer_id
    FROM (
        SELECT z.expert_id AS owner_id, z.kind, z.code FROM {_TERRITORY} WHERE z.expert_id IS NOT NULL
        UNION ALL
        SELECT id, 'national', NULL FROM experts WHERE national
    ) e JOIN experts x ON x.id = e.owner_id JOIN antennes n ON n.id = x.antenne_id {_OFFERED}
    WHERE {_LIVE}
    UNION ALL
    SELECT {_COLUMNS}, a.kind, a.code, 'antenne', s.id
    FROM (
        SELECT z.antenne_id AS owner_id, z.kind, z.code FROM {_TERRITORY} WHERE z.antenne_id IS NOT NULL
        UNION ALL
        SELECT id, 'national', NULL FROM antennes WHERE national
    ) a JOIN antennes n ON n.id = a.owner_id {_OFFERED} JOIN experts x ON x.antenne_id = n.id
    WHERE {_NO_OWN_ZONE} AND {_LIVE}
) c
JOIN expert_subjects es ON es.expert_id = c.id AND es.institution_subject_id = c.offer_id
WHERE EXISTS (SELECT 1 FROM subjects sub WHERE sub.id = %(subject)s AND sub.archived_at IS NULL)
ORDER BY c.institution, c.antenne, c.full_name, c.id,
    CASE c.kind WHEN 'commune' THEN 0 WHEN 'epci' THEN 1 WHEN 'departement' THEN 2 WHEN 'region' THEN 3 ELSE 4 END
"""


# Issue 14: the same rule with routing filters on a fifth of the institutions, the filters'
# refusal written by hand in SQL (the generated filters use the criteria SQL reads plainly:
# headcount, natures of activity, NAF prefixes, excluded communes; every company fact is known).
FLOOR_FILTER_SQL = """
AND NOT EXISTS (
    SELECT 1 FROM routing_filters f
    WHERE (f.institution_id = c.institution_id OR f.antenne_id = c.antenne_id OR f.expert_id = c.id)
      AND (NOT EXISTS (SELECT 1 FROM routing_filter_subjects fs WHERE fs.routing_filter_id = f.id)
           OR EXISTS (SELECT 1 FROM routing_filter_subjects fs
                      WHERE fs.routing_filter_id = f.id AND fs.subject_id = %(subject)s))
      AND ((f.min_headcount IS NOT NULL AND %(low)s < f.min_headcount)
           OR (f.activities_accepted <> ''
               AND NOT %(nature)s = ANY (string_to_array(f.activities_accepted, ' ')))
           OR (f.naf_accepted <> '' AND NOT EXISTS (
                SELECT 1 FROM unnest(string_to_array(f.naf_accepted, ' ')) p
                WHERE replace(%(naf)s, '.', '') LIKE replace(p, '.', '') || '%%'))
           OR %(commune)s = ANY (string_to_array(f.excluded_communes, ' ')))
)
"""
FLOOR_FILTERED_SQL = FLOOR_ROUTING_SQL.replace("\nORDER BY", FLOOR_FILTER_SQL + "ORDER BY", 1)
FILTER_SHARE = 5  # one institution in five has filters
_BENCH_COMPANIES = [
    ("43.21A", "03", "artisanale"),
    ("47.11Z", "11", "commerciale"),
    ("25.62B", "21", "industrielle"),
    ("62.01Z", "12", "libérale"),
]


def generate_filters(conn: psycopg.Connection) -> int:
    """Filters on a fifth of the institutions: one institution-wide, and on some of them one per
    antenne limited to a subject, as partners write them."""
    rng = random.Random(SEED + 14)
    conn.execute("TRUNCATE routing_filter_subjects, routing_filters RESTART IDENTITY CASCADE")
    institutions = [r[0] for r in conn.execute("SELECT id FROM institutions ORDER BY id")]
    subjects = [r[0] for r in conn.execute("SELECT id FROM subjects ORDER BY id")]
    choices = [
        {"activities_accepted": "artisanale"},
        {"activities_accepted": "commerciale industrielle"},
        {"min_headcount": 10},
        {"naf_accepted": "25 43 47"},  # the floor reads prefixes, not section letters
        {"excluded_communes": "69123 75056"},
    ]
    count = 0
    for institution_id in institutions[::FILTER_SHARE]:
        criteria = rng.choice(choices)
        conn.execute(
            f"INSERT INTO routing_filters (institution_id, {', '.join(criteria)}) VALUES (%s, {', '.join(['%s'] * len(criteria))})",
            (institution_id, *criteria.values()),
        )
        count += 1
        for (antenne_id,) in conn.execute(
            "SELECT id FROM antennes WHERE institution_id = %s ORDER BY id LIMIT 3", (institution_id,)
        ).fetchall():
            criteria = rng.choice(choices)
            filter_id = conn.execute(
                f"INSERT INTO routing_filters (antenne_id, {', '.join(criteria)}) "
                f"VALUES (%s, {', '.join(['%s'] * len(criteria))}) RETURNING id",
                (antenne_id, *criteria.values()),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO routing_filter_subjects (routing_filter_id, subject_id) VALUES (%s, %s)",
                (filter_id, rng.choice(subjects)),
            )
            count += 1
    return count


def _company(index: int, insee: str):
    from app.services.addressbook.company_filters import CompanyFacts

    naf, headcount, nature = _BENCH_COMPANIES[index % len(_BENCH_COMPANIES)]
    return CompanyFacts(insee, naf_code=naf, headcount_code=headcount, activity_nature=nature)


_SERIAL_ONLY = "-c max_parallel_workers_per_gather=0"
CONNECT_OPTIONS: dict[str, str] = {}


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(_libpq_url(url), **CONNECT_OPTIONS)


def ensure_database(url: str) -> None:
    parsed = make_url(url)
    admin = _libpq_url(str(parsed.set(database="postgres").render_as_string(hide_password=False)))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
            print(f"base créée : {parsed.database}")


# ---------------------------------------------------------------- generation

# Bump when the generated shape changes: a database holding another shape is regenerated.
DATA_SHAPE = 2
# Institution kinds: (name, share of the institutions, themes offered). An institution offers
# the subjects of its kind's themes (each kept with OFFER_KEEP), never the whole catalog.
KINDS = (
    ("chambre consulaire", 0.16, ("developpement-commercial", "transmission-reprise", "transition-numerique")),
    ("organisme social", 0.10, ("ressources-humaines", "droit-du-travail", "difficultes-financieres")),
    ("prévention", 0.07, ("sante-securite-travail", "ressources-humaines")),
    ("financeur", 0.12, ("investissement", "difficultes-financieres")),
    ("emploi et formation", 0.10, ("ressources-humaines", "droit-du-travail")),
    ("agence environnement", 0.08, ("environnement",)),
    ("collectivité", 0.27, ("investissement", "developpement-commercial", "transmission-reprise")),
    ("numérique", 0.10, ("transition-numerique", "developpement-commercial", "environnement")),
)
OFFER_KEEP = 0.8
# Antenne zones: a handful of national antennes; then mostly départements, EPCI lists and
# commune lists, few régions. Experts with their own zone override mostly narrow it.
NATIONAL_ANTENNES = 6
ANTENNE_LEVELS = {"region": 1.2, "departement": 21, "epci": 42, "commune": 35.8}
OWN_ZONE_SHARE = 0.10
OWN_LEVELS = {"national": 0.3, "region": 4, "departement": 40, "epci": 26, "commune": 29.7}
SECOND_SUBJECT = 0.3  # an expert takes one subject of its antenne's offer, sometimes two


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def data_shape() -> str:
    """What the generated data depends on, stored with it: a difference means regenerate."""
    return f"bench.routing shape={DATA_SHAPE} seed={SEED} scale={json.dumps(SCALE, sort_keys=True)}"


def _offers(rng: random.Random, catalog: list[tuple[int, str]]) -> tuple[list[tuple], dict[int, list[int]], list]:
    """Institutions and their offers: each institution has a kind, and offers (most of) the
    subjects of its kind's themes; every subject of the catalog ends up offered somewhere."""
    themes: dict[str, list[int]] = defaultdict(list)
    for subject_id, theme in catalog:
        themes[theme].append(subject_id)
    kind_themes = [[t for t in kind_theme_list if t in themes] for _, _, kind_theme_list in KINDS]
    named = {t for ts in kind_themes for t in ts}
    for index, theme in enumerate(t for t in themes if t not in named):  # a catalog that grew
        kind_themes[index % len(KINDS)].append(theme)
    count = SCALE["institutions"]
    kinds = [k for k, (_, share, _) in enumerate(KINDS) for _ in range(round(share * count))]
    kinds = (kinds + [len(KINDS) - 1] * count)[:count]
    rng.shuffle(kinds)
    institutions, offers, offer_of = [], [], {}
    for inst_id, kind in enumerate(kinds, start=1):
        institutions.append((inst_id, f"Institution {inst_id} ({KINDS[kind][0]})", f"institution-{inst_id}"))
        pool = [s for t in kind_themes[kind] for s in themes[t]]
        chosen = [s for s in pool if rng.random() < OFFER_KEEP] or [rng.choice(pool)]
        offer_of[inst_id] = chosen
    offered = {s for chosen in offer_of.values() for s in chosen}
    for subject_id, _ in catalog:
        if subject_id not in offered:
            offer_of[1 + subject_id % count].append(subject_id)
    ids: dict[int, list[int]] = {}
    for inst_id in sorted(offer_of):
        ids[inst_id] = []
        for subject_id in sorted(set(offer_of[inst_id])):
            offers.append((len(offers) + 1, inst_id, subject_id))
            ids[inst_id].append(len(offers))
    return institutions, ids, offers


def generate(conn: psycopg.Connection) -> dict[str, int]:
    """A deterministic address book shaped like the real one, at ten times its size; zones
    drawn from the real territories.

    * institutions have a kind that decides the themes they offer (a few subjects each);
    * every institution has an antenne, networks many (sizes skewed); a handful of antennes
      are national, few régional, most cover a département, a few EPCI or a commune list;
    * experts (20 per antenne on average) specialise: each takes one subject of its
      institution's offer, sometimes two, in turn, so each subject of an antenne is taken by
      one or a few of its experts; one in ten has its own zone, mostly narrower.
    """
    rng = random.Random(SEED)
    catalog = conn.execute(
        "SELECT s.id, t.slug FROM subjects s JOIN themes t ON t.id = s.theme_id "
        "WHERE s.archived_at IS NULL ORDER BY t.position, t.id, s.position, s.id"
    ).fetchall()
    communes = conn.execute("SELECT code, epci_code, departement_code, region_code FROM communes ORDER BY code")
    by_dep: dict[str, list[tuple]] = defaultdict(list)
    for row in communes:
        by_dep[row[2]].append(row)
    departements = sorted(by_dep)
    dep_region = {dep: rows[0][3] for dep, rows in by_dep.items()}
    region_deps: dict[str, list[str]] = defaultdict(list)
    for dep in departements:
        region_deps[dep_region[dep]].append(dep)
    dep_epcis = {dep: sorted({r[1] for r in rows if r[1]}) for dep, rows in by_dep.items()}

    # A list of communes or EPCIs lies in a département drawn by its number of them: Paris is
    # one commune, and a hundred commune lists drawn there would all name it.
    dep_weights = {
        "commune": [len(by_dep[d]) for d in departements],
        "epci": [len(dep_epcis[d]) or 1 for d in departements],
    }

    def zone_for(owner: tuple, level: str, zones: list[tuple]) -> None:
        weights = dep_weights.get(level)
        dep = rng.choices(departements, weights)[0] if weights else rng.choice(departements)
        if level == "region":
            refs = [("region", dep_region[dep])]
        elif level == "departement":
            neighbours = [d for d in region_deps[dep_region[dep]] if d != dep]
            deps = {dep, rng.choice(neighbours)} if neighbours and rng.random() < 0.15 else {dep}
            refs = [("departement", d) for d in sorted(deps)]
        elif level == "epci":
            pool = dep_epcis[dep] or [rng.choice(by_dep[dep])[0]]
            kind = "epci" if dep_epcis[dep] else "commune"
            refs = [(kind, e) for e in rng.sample(pool, min(len(pool), rng.randint(1, 4)))]
        else:
            pool = [r[0] for r in by_dep[dep]]
            refs = [("commune", c) for c in rng.sample(pool, min(len(pool), rng.randint(5, 40)))]
        zones.extend((*owner, kind, code) for kind, code in refs)

    institutions, offer_ids, offers = _offers(rng, catalog)

    # Every institution has an antenne; the rest go to networks of skewed sizes.
    inst_ids = [i for i, *_ in institutions]
    network = [1 / rank**0.9 for rank in range(1, len(inst_ids) + 1)]
    owners = inst_ids + rng.choices(inst_ids, network, k=SCALE["antennes"] - len(inst_ids))
    national = set(rng.sample(range(1, SCALE["antennes"] + 1), NATIONAL_ANTENNES))
    antennes: list[tuple] = []
    zones: list[tuple] = []
    for antenne_id, inst_id in enumerate(owners, start=1):
        antennes.append((antenne_id, inst_id, f"Antenne {antenne_id}", antenne_id in national))
        if antenne_id not in national:
            level = rng.choices(list(ANTENNE_LEVELS), list(ANTENNE_LEVELS.values()))[0]
            zone_for((antenne_id, None), level, zones)

    experts: list[tuple] = []
    links: list[tuple] = []
    taken = [rng.randrange(1000) for _ in antennes]  # where each antenne's rotation starts
    for expert_id in range(1, SCALE["experts"] + 1):
        antenne_id = rng.randint(1, SCALE["antennes"])
        own_national = False
        if rng.random() < OWN_ZONE_SHARE:
            level = rng.choices(list(OWN_LEVELS), list(OWN_LEVELS.values()))[0]
            own_national = level == "national"
            if not own_national:
                zone_for((None, expert_id), level, zones)
        experts.append(
            (expert_id, antenne_id, f"Expert {expert_id:06d}", f"expert{expert_id}@partenaire.example", own_national)
        )
        offer = offer_ids[owners[antenne_id - 1]]
        chosen = {offer[taken[antenne_id - 1] % len(offer)]}
        taken[antenne_id - 1] += 1
        if len(offer) > 1 and rng.random() < SECOND_SUBJECT:
            chosen.add(rng.choice([o for o in offer if o not in chosen]))
        first = len(links) + 1
        links.extend((first + n, expert_id, offer_id) for n, offer_id in enumerate(sorted(chosen)))

    _copy(conn, "institutions", ["id", "name", "slug"], institutions)
    _copy(conn, "institution_subjects", ["id", "institution_id", "subject_id"], offers)
    _copy(conn, "antennes", ["id", "institution_id", "name", "national"], antennes)
    _copy(conn, "experts", ["id", "antenne_id", "full_name", "email", "national"], experts)
    _copy(conn, "expert_subjects", ["id", "expert_id", "institution_subject_id"], links)
    _copy(conn, "zones", ["antenne_id", "expert_id", "kind", "code"], zones)
    for table in ("institutions", "institution_subjects", "antennes", "experts", "expert_subjects", "zones"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    conn.execute(f"COMMENT ON TABLE experts IS '{data_shape()}'")
    return {
        "institutions": len(institutions),
        "institution_subjects": len(offers),
        "antennes": len(antennes),
        "experts": len(experts),
        "expert_subjects": len(links),
        "zones": len(zones),
    }


def prepare(app, url: str, regenerate: bool) -> dict[str, int]:
    from app.extensions import db
    from app.services.reference.catalog import load_catalog
    from app.services.reference.geo import load_territories

    with app.app_context():
        db.create_all()
        if not db.session.scalar(text("SELECT count(*) FROM communes")):
            print("chargement des territoires…")
            load_territories(app.config["GEO_DATA_DIR"])
        load_catalog(app.config["CATALOG_DEFAULT_PATH"])
        db.session.commit()
        db.session.remove()
    with psycopg.connect(_libpq_url(url)) as conn:
        existing = conn.execute("SELECT obj_description('experts'::regclass, 'pg_class')").fetchone()[0]
        if existing == data_shape() and not regenerate:
            print(f"annuaire déjà généré ({existing}) : --regenerate pour le refaire")
        else:
            started = time.perf_counter()
            conn.execute(
                "TRUNCATE zones, expert_subjects, experts, institution_subjects, antennes, institutions "
                "RESTART IDENTITY CASCADE"
            )
            counts = generate(conn)
            conn.commit()
            print(f"annuaire généré en {time.perf_counter() - started:.1f} s : {counts}")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # index-only scans need the visibility map
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("institutions", "antennes", "experts", "expert_subjects", "zones")
        }


# ---------------------------------------------------------------- measurement


def _floor(conn: psycopg.Connection, subject_id: int, insee: str, company=None) -> list[tuple]:
    row = conn.execute(FLOOR_COMMUNE_SQL, (insee,)).fetchone()
    params = {"commune": row[0], "epci": row[1], "departement": row[2], "region": row[3], "subject": subject_id}
    statement = FLOOR_ROUTING_SQL
    if company is not None:
        from app.services.reference.registry import HEADCOUNT_BRACKETS

        low = HEADCOUNT_BRACKETS[company.headcount_code][1]
        params |= {"low": low, "nature": company.activity_nature, "naf": company.naf_code}
        statement = FLOOR_FILTERED_SQL
    seen: set[int] = set()
    result = []
    for r in conn.execute(statement, params):
        if r[0] not in seen:
            seen.add(r[0])
            result.append(r)
    return result


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "p99": round(cuts[98], 3), "max": round(ms[-1], 3)}


def _pairs(app, count: int) -> list[tuple[int, str]]:
    """Random subjects × communes weighted by population: needs come from where businesses are."""
    from app.extensions import db

    rng = random.Random(SEED + 1)
    with app.app_context():
        subjects = [r[0] for r in db.session.execute(text("SELECT id FROM subjects WHERE archived_at IS NULL"))]
        communes = db.session.execute(text("SELECT code, population FROM communes")).all()
        db.session.rollback()
    codes = [c for c, _ in communes]
    weights = [max(p, 1) for _, p in communes]
    return [(rng.choice(subjects), rng.choices(codes, weights)[0]) for _ in range(count)]


def measure(app, url: str, pairs: list[tuple[int, str]], warmup: int, end: str, filtered: bool = False) -> dict:
    """Time both sides on the same pairs, each call in its own transaction ended by ``end``.

    ``commit`` is the request flow (routing a need writes its matches, then commits): psycopg
    keeps its prepared statements. ``rollback`` is a read-only page: psycopg drops them at
    every ROLLBACK, so each call parses and plans again.
    """
    from app.extensions import db
    from app.services.addressbook.routing import find_experts

    service_ns: list[int] = []
    floor_ns: list[int] = []
    sizes: list[int] = []
    mismatches = 0
    with app.app_context(), _connect(url) as conn:
        db.engine.dispose()  # fresh connections: nothing prepared by a previous mode
        session = db.session
        for index, (subject_id, insee) in enumerate(pairs):
            # Alternate which side runs first, so neither always gets the warmer cache.
            order = ("service", "floor") if index % 2 == 0 else ("floor", "service")
            results = {}
            for side in order:
                if side == "service":
                    # The request flow calls the service on a connection it already holds.
                    session.connection()
                started = time.perf_counter_ns()
                company = _company(index, insee) if filtered else None
                if side == "service":
                    results[side] = find_experts(subject_id, insee, company)
                else:
                    results[side] = _floor(conn, subject_id, insee, company)
                elapsed = time.perf_counter_ns() - started
                finish = session if side == "service" else conn
                finish.commit() if end == "commit" else finish.rollback()
                if index >= warmup:
                    (service_ns if side == "service" else floor_ns).append(elapsed)
            if [m.expert_id for m in results["service"]] != [r[0] for r in results["floor"]]:
                mismatches += 1
            if index >= warmup:
                sizes.append(len(results["service"]))
        session.remove()
    service = _percentiles(service_ns)
    floor = _percentiles(floor_ns)
    return {
        "service_ms": service,
        "floor_ms": floor,
        "ratio_p95": round(service["p95"] / floor["p95"], 2),
        "experts_per_need": {
            "mean": round(statistics.fmean(sizes), 1),
            "p50": statistics.median(sizes),
            "p95": statistics.quantiles(sizes, n=100, method="inclusive")[94],
            "max": max(sizes),
            "zero": sum(1 for s in sizes if s == 0),
        },
        "mismatches": mismatches,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Latence de l'aiguillage à 10× l'échelle nationale.")
    parser.add_argument("--pairs", type=int, default=2000, help="couples sujet × commune mesurés")
    parser.add_argument("--warmup", type=int, default=200, help="couples joués avant la mesure")
    parser.add_argument("--regenerate", action="store_true", help="régénère l'annuaire")
    parser.add_argument(
        "--no-parallel",
        action="store_true",
        help="max_parallel_workers_per_gather=0 pour les deux côtés (réglage OLTP conseillé)",
    )
    args = parser.parse_args(argv)
    if args.no_parallel:
        CONNECT_OPTIONS["options"] = _SERIAL_ONLY

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    from app import create_app

    engine_options = {"pool_pre_ping": True, "connect_args": dict(CONNECT_OPTIONS)}
    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS=engine_options)
    counts = prepare(app, url, args.regenerate)
    pairs = _pairs(app, args.pairs + args.warmup)
    # The rule as it was before filters existed: no filter in the address book.
    with psycopg.connect(_libpq_url(url)) as conn:
        conn.execute("TRUNCATE routing_filter_subjects, routing_filters RESTART IDENTITY CASCADE")
    modes = {end: measure(app, url, pairs, args.warmup, end) for end in ("commit", "rollback")}
    # Issue 14: the same pairs with filters on a fifth of the institutions, for companies with known facts.
    with psycopg.connect(_libpq_url(url)) as conn:
        counts["routing_filters"] = generate_filters(conn)
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE routing_filters, routing_filter_subjects")
    modes["commit+filtres"] = measure(app, url, pairs, args.warmup, "commit", filtered=True)
    headline = modes["commit"]
    result = {
        "pairs": args.pairs,
        "warmup": args.warmup,
        "modes": modes,
        "dataset": counts,
        "postgresql": _connect(url).execute("SHOW server_version").fetchone()[0],
        "python": platform.python_version(),
        "targets": {"p95_ms": TARGET_P95_MS, "ratio_p95": TARGET_RATIO, "judged_on": "commit"},
        "parallel_query": not args.no_parallel,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "meets_targets": all(
            modes[m]["service_ms"]["p95"] < TARGET_P95_MS and modes[m]["ratio_p95"] <= TARGET_RATIO
            for m in ("commit", "commit+filtres")
        ),
    }

    out = io.StringIO()
    out.write(f"\nAiguillage — {args.pairs} couples sujet × commune (après {args.warmup} d'échauffement)\n")
    out.write(f"annuaire : {counts}\n")
    out.write(f"experts par besoin : {headline['experts_per_need']}\n")
    out.write(
        f"requêtes parallèles : {'oui' if result['parallel_query'] else 'non'} ; charge : {result['load_average_1min']}\n\n"
    )
    out.write(f"{'':38}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)\n")
    for end, mode in modes.items():
        for label, key in (("service find_experts", "service_ms"), ("plancher psycopg brut", "floor_ms")):
            row = mode[key]
            name = f"{label} ({end})"
            out.write(f"{name:38}{row['p50']:>9.3f}{row['p95']:>9.3f}{row['p99']:>9.3f}{row['max']:>9.3f}\n")
        out.write(f"{'rapport p95 service / plancher':38}{mode['ratio_p95']:>9}\n")
    out.write(
        f"\ncibles (fin de transaction par COMMIT, comme l'aiguillage d'un besoin) : p95 < {TARGET_P95_MS} ms "
        f"et rapport ≤ {TARGET_RATIO} → {'atteintes' if result['meets_targets'] else 'non atteintes'}\n"
    )
    mismatches = sum(m["mismatches"] for m in modes.values())
    out.write(f"résultats différents service / plancher : {mismatches}\n")
    print(out.getvalue())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"écrit : {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
