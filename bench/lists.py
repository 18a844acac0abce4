"""Back-office list pages at national volume: 400,000 needs and 1,000,000 matches.

Builds a dedicated PostgreSQL database (``pde_bench_lists``, or ``BENCH_LISTS_DATABASE_URL``),
dropped at the end unless ``--keep`` (a kept database is reused by the next ``--keep`` run
while its data shape is the same):

* the address book of ``bench.routing`` at today's national size (40 institutions, 500
  antennes, 10,000 experts with their zones; ``--addressbook 1`` for its ten-times size), the
  real territories and the catalog;
* three years of requests, ids in time order: companies, facilities (communes drawn by
  population), contacts, one solicitation per need plus abandoned ones and a small queue « À
  qualifier », needs with their search documents (built by ``services.search``, as the
  application does), and 2.5 matches per need on average, sent to experts whose antenne covers
  the need's département (or its région) when there are some;
* a status mix by age, as in the real service: recent needs mostly wait or are being handled,
  old ones are closed, and about one in six was never taken by anyone.

Rows are written with COPY, the big tables' secondary indexes dropped during the load and
built afterwards (as ``create_all`` declares them, the GIN full-text indexes included).

Then, logged in as staff through the real login form, the Flask test client asks each list
page ``--requests`` times (after ``--warmup`` requests), varying the value each time
(département, company name, institution), and reports p50/p95 latency, the SQL statements
per page and the time spent in them. Target: p95 under 200 ms for every page.

Usage: ``python -m bench.lists [--requests 40] [--warmup 5] [--keep]
[--scale 1.0] [--addressbook 0.1]``. Results go to ``bench/results/lists.json``. A missed
target is reported, not an error: the run fails only when a page does not answer.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import random
import re
import secrets
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from bench import routing
from bench.routing import _copy, _libpq_url, _percentiles, ensure_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pde_bench_lists"
RESULTS = Path(__file__).resolve().parent / "results" / "lists.json"
SEED = 20261127
SCALE = {"needs": 400_000, "matches": 1_000_000}
TARGET_P95_MS = 200.0
# bench.routing's address book is ten times today's: 40 institutions, 500 antennes, 10,000
# experts is the national one the lists serve.
NATIONAL_ADDRESSBOOK = 0.1
DATA_SHAPE = 1
YEARS = 3
CHUNK = 20_000
# Share of needs from a business already known (same facility, same contact).
REPEAT_SHARE = 0.22
# Requests the form received beside the needs: abandoned ones, and the queue staff qualify.
CANCELED_SHARE = 0.06
QUEUE_SIZE = 300
REQUEST_TABLES = ("matches", "needs", "solicitations", "contacts", "facilities", "companies")

ACTIVITIES = (
    "Boulangerie", "Pâtisserie", "Boucherie", "Garage", "Menuiserie", "Plomberie", "Électricité",
    "Transports", "Restaurant", "Café", "Hôtel", "Pharmacie", "Cabinet", "Atelier", "Imprimerie",
    "Librairie", "Fromagerie", "Coiffure", "Maçonnerie", "Charpente", "Couverture", "Peinture",
    "Carrosserie", "Ambulances", "Taxi", "Jardins", "Paysages", "Nettoyage", "Informatique",
    "Conseil", "Architecture", "Optique", "Fleuriste", "Épicerie", "Brasserie", "Scierie",
    "Ferronnerie", "Vins", "Domaine", "Ferme",
)  # fmt: skip
SURNAMES = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
    "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
    "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
    "Müller", "Lefebvre", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier",
    "Chevalier", "François", "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément",
    "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson", "Marchand", "Duval",
    "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun",
    "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
    "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal",
    "Caron", "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix",
    "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet", "Rolland",
    "Leclercq", "Guillaume", "Lecomte", "Lopez", "Jean", "Dupuy", "Guillot", "Hubert", "Berger",
    "Carpentier", "Sanchez", "Dupuis", "Moulin", "Louis", "Deschamps", "Huet", "Vasseur", "Perez",
    "Boucher", "Fleury", "Royer", "Klein", "Jacquet", "Adam", "Paris", "Poirier", "Marty",
    "Aubry", "Guyot", "Carré", "Charles", "Renault", "Charpentier", "Ménard", "Maillard",
    "Baron", "Bertin", "Bailly", "Hervé", "Schneider", "Fernandez", "Le Gall", "Collet", "Léger",
    "Bouvier", "Julien", "Prévost", "Millet", "Perrot", "Daniel", "Le Roux", "Cousin", "Germain",
)  # fmt: skip
FIRST_NAMES = (
    "Marie", "Jean", "Camille", "Nicolas", "Julie", "Pierre", "Sophie", "Thomas", "Émilie",
    "Antoine", "Claire", "Julien", "Hélène", "Mathieu", "Céline", "Sébastien", "Laure", "François",
    "Nathalie", "Olivier", "Anne", "Stéphane", "Isabelle", "Christophe", "Aurélie", "David",
    "Élodie", "Guillaume", "Sandrine", "Laurent", "Chloé", "Maxime", "Léa", "Hugo", "Manon",
    "Lucas", "Inès", "Karim", "Fatima", "Mehdi", "Zoé", "Théo", "Gaëlle", "Jérôme", "Agnès",
)  # fmt: skip
SUFFIXES = ("", "", "", " et Fils", " Frères", " du Centre", " de la Gare", " SARL", " SAS", " & Associés")
MAIL_DOMAINS = ("orange.fr", "gmail.com", "wanadoo.fr", "free.fr", "laposte.net", "outlook.fr", "sfr.fr")
SENTENCES = (
    "Nous cherchons à recruter deux salariés en contrat à durée indéterminée.",
    "Je souhaite accueillir un apprenti à la rentrée de septembre.",
    "Notre trésorerie est tendue depuis la perte d'un client important.",
    "Nous avons des dettes sociales à étaler avec l'Urssaf.",
    "Je voudrais financer une nouvelle machine de production.",
    "Nous aimerions vendre nos produits en Allemagne et en Belgique.",
    "Je pense céder mon entreprise d'ici deux ans et cherche un repreneur.",
    "Notre site internet est ancien, nous voulons vendre en ligne.",
    "Nous avons subi une attaque informatique le mois dernier.",
    "Je cherche un local plus grand pour développer l'activité.",
    "Nous voulons réduire notre consommation d'énergie.",
    "Un salarié est en arrêt depuis longtemps, comment organiser son retour ?",
    "Nous souhaitons répondre à des marchés publics de la région.",
    "Le chiffre d'affaires a baissé de trente pour cent cette année.",
    "Je voudrais former mon équipe aux outils numériques.",
    "Nous avons un projet d'extension de l'atelier.",
    "Un conflit avec un salarié nous inquiète, nous avons besoin de conseils.",
    "Nous recherchons des aides pour embaucher un jeune.",
    "Comment rédiger un contrat de travail à temps partiel ?",
    "Nous voulons trouver de nouveaux clients professionnels.",
    "Les prix des matières premières ont beaucoup augmenté.",
    "Je reprends l'entreprise de mes parents et voudrais être accompagné.",
    "Nous envisageons une rupture conventionnelle avec un salarié.",
    "Notre banque refuse un prêt, existe-t-il d'autres solutions ?",
)  # fmt: skip
# Need status by age (the stored status names), and the weights of each.
STATUS_MIX = (
    (timedelta(days=10), {"quo": 58, "taking_care": 32, "done": 5, "not_for_me": 5}),
    (
        timedelta(days=60),
        {"quo": 28, "taking_care": 36, "done": 20, "not_for_me": 8, "done_no_help": 5, "done_not_reachable": 3},
    ),
    (
        timedelta(days=YEARS * 366),
        {"quo": 16, "taking_care": 10, "done": 42, "not_for_me": 12, "done_no_help": 12, "done_not_reachable": 8},
    ),
)
MATCHES_PER_NEED = (1, 2, 2, 3, 3, 4)  # 2.5 on average


@contextmanager
def addressbook_scale(factor: float) -> Iterator[None]:
    """``bench.routing``'s generator at ``factor`` times its size (it builds ten times today's
    national address book; the lists are measured at today's national volume)."""
    saved = dict(routing.SCALE)
    routing.SCALE.update({key: max(1, int(value * factor)) for key, value in saved.items()})
    try:
        yield
    finally:
        routing.SCALE.update(saved)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    admin = _libpq_url(str(parsed.set(database="postgres").render_as_string(hide_password=False)))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def _schema_digest() -> str:
    """A digest of the models' tables, columns and indexes: a database kept with ``--keep`` is
    rebuilt once the schema changed (a migration added a column), instead of failing on it."""
    import hashlib

    from app import models  # noqa: F401 - every table registered
    from app.extensions import db

    parts = []
    for table in sorted(db.metadata.tables.values(), key=lambda t: t.name):
        parts.append(table.name + ":" + ",".join(sorted(c.name for c in table.columns)))
        parts.append(",".join(sorted(i.name or "" for i in table.indexes)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


def data_shape(scale: float, book: float) -> str:
    return f"bench.lists shape={DATA_SHAPE} schema={_schema_digest()} seed={SEED} scale={scale} addressbook={book}"


# ---------------------------------------------------------------- generation


class Generator:
    """Writes the requests table by table in chunks of ``CHUNK`` needs (bounded memory)."""

    def __init__(self, conn: psycopg.Connection, scale: float, now: datetime) -> None:
        from app.services.requests.search import build_document

        self.build_document = build_document
        self.conn = conn
        self.rng = random.Random(SEED)
        self.now = now
        self.needs_total = int(SCALE["needs"] * scale)
        self.matches_target = int(SCALE["matches"] * scale)
        communes = conn.execute(
            "SELECT c.code, c.departement_code, c.region_code, c.population, min(p.postal_code) "
            "FROM communes c JOIN commune_postal_codes p ON p.commune_code = c.code "
            "GROUP BY c.code ORDER BY c.code"
        ).fetchall()
        self.communes = [(code, dep, region, postal) for code, dep, region, _, postal in communes]
        # Businesses are where people are: communes drawn by population.
        self.commune_weights = list(itertools.accumulate(max(pop, 1) for *_, pop, _ in communes))
        self.subjects = [r[0] for r in conn.execute("SELECT id FROM subjects WHERE archived_at IS NULL ORDER BY id")]
        self.experts_by_dep, self.experts_by_region, self.expert_count = self._experts()

    def _experts(self) -> tuple[dict[str, list[int]], dict[str, list[int]], int]:
        by_dep: dict[str, list[int]] = defaultdict(list)
        by_region: dict[str, list[int]] = defaultdict(list)
        for kind, code, expert_id in self.conn.execute(
            "SELECT z.kind, z.code, e.id FROM zones z JOIN experts e ON e.antenne_id = z.antenne_id "
            "WHERE z.kind IN ('departement', 'region') ORDER BY z.id, e.id"
        ):
            (by_dep if kind == "departement" else by_region)[code].append(expert_id)
        count = self.conn.execute("SELECT count(*) FROM experts").fetchone()[0]
        return by_dep, by_region, count

    def _status(self, age: timedelta) -> str:
        for limit, weights in STATUS_MIX:
            if age <= limit:
                return self.rng.choices(list(weights), list(weights.values()))[0]
        return "done"

    def _experts_for(self, dep: str, region: str, count: int) -> list[tuple[int, str]]:
        """``count`` distinct experts covering the département, else the région, else anyone."""
        rng = self.rng
        chosen: dict[int, str] = {}
        for pool, zone in (
            (self.experts_by_dep.get(dep), f"departement:{dep}"),
            (self.experts_by_region.get(region), f"region:{region}"),
        ):
            if pool:
                for expert in rng.sample(pool, min(count - len(chosen), len(pool))):
                    chosen.setdefault(expert, zone)
            if len(chosen) >= count:
                break
        while len(chosen) < count:
            chosen.setdefault(rng.randint(1, self.expert_count), "national")
        return list(chosen.items())[:count]

    def _company_name(self) -> str:
        rng = self.rng
        return f"{rng.choice(ACTIVITIES)} {rng.choice(SURNAMES)}{rng.choice(SUFFIXES)}"

    def run(self) -> dict[str, int]:
        rng = self.rng
        span = timedelta(days=YEARS * 365)
        # Ages sorted oldest first, so ids follow time as in the real tables.
        ages = sorted((span * rng.random() for _ in range(self.needs_total)), reverse=True)
        per_need = self.matches_target / max(self.needs_total, 1)
        factor = per_need / (sum(MATCHES_PER_NEED) / len(MATCHES_PER_NEED))
        known: list[tuple] = []  # businesses met before: a share of the needs come back to them
        ids: dict[str, int] = defaultdict(int)
        for start in range(0, self.needs_total, CHUNK):
            rows: dict[str, list[tuple]] = defaultdict(list)
            for age in ages[start : start + CHUNK]:
                created = self.now - age
                if known and rng.random() < REPEAT_SHARE:
                    business = rng.choice(known)
                else:
                    ids["company"] += 1
                    company_id = ids["company"]
                    name = self._company_name()
                    siren = f"{800_000_000 + company_id:09d}"
                    siret = f"{siren}{rng.randint(10, 99):03d}{rng.randint(10, 99)}"
                    commune = rng.choices(self.communes, cum_weights=self.commune_weights)[0]
                    ids["facility"] += 1
                    ids["contact"] += 1
                    first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
                    email = f"{first}.{last}{company_id}@{rng.choice(MAIL_DOMAINS)}".lower().replace(" ", "")
                    email = email.encode("ascii", "ignore").decode()
                    phone = f"0{rng.choice('1234567')}{rng.randint(0, 99_999_999):08d}"
                    business = (
                        company_id, ids["facility"], ids["contact"], name, siret, commune[0], commune[1],
                        commune[2], commune[3], f"{first} {last}", email, phone,
                    )  # fmt: skip
                    rows["companies"].append((company_id, siren, name, created, created))
                    rows["facilities"].append((ids["facility"], company_id, siret, commune[0], created, created))
                    rows["contacts"].append(
                        (ids["contact"], company_id, f"{first} {last}", email, phone, created, created)
                    )
                    if len(known) < 200_000:
                        known.append(business)
                    else:
                        known[rng.randrange(len(known))] = business
                company_id, facility_id, contact_id, name, siret, insee, dep, region, postal, person, email, phone = (
                    business
                )
                description = " ".join(rng.sample(SENTENCES, rng.randint(1, 3)))
                subject_id = rng.choice(self.subjects)
                status = self._status(age)
                processed = created + timedelta(minutes=rng.randint(1, 600))
                ids["solicitation"] += 1
                ids["need"] += 1
                document = self.build_document(
                    names=(name, person), siret=siret, email=email, phone=phone, description=description
                )
                rows["solicitations"].append(
                    (
                        ids["solicitation"], subject_id, "processed", person, email, phone, siret, postal, insee,
                        description, name, "[]", processed, document, created, created,
                    )
                )  # fmt: skip
                rows["needs"].append(
                    (
                        ids["need"], ids["solicitation"], subject_id, facility_id, contact_id, description, status,
                        document, processed, processed,
                    )
                )  # fmt: skip
                count = max(1, round(rng.choice(MATCHES_PER_NEED) * factor))
                for index, (expert_id, zone) in enumerate(self._experts_for(dep, region, count)):
                    match_status = self._match_status(status, index)
                    taken = closed = None
                    if match_status not in ("quo", "not_for_me"):
                        taken = processed + timedelta(hours=rng.randint(1, 240))
                        if match_status.startswith("done"):
                            closed = taken + timedelta(days=rng.randint(1, 60))
                    ids["match"] += 1
                    rows["matches"].append(
                        (
                            ids["match"], ids["need"], expert_id, match_status, zone, "antenne", taken, closed,
                            processed, processed,
                        )
                    )  # fmt: skip
                if rng.random() < CANCELED_SHARE:
                    ids["solicitation"] += 1
                    rows["solicitations"].append(
                        (
                            ids["solicitation"], subject_id, "canceled", person, email, phone, siret, postal, insee,
                            description, name, '["Hors sujet"]', None, document, created, created,
                        )
                    )  # fmt: skip
            self._write(rows)
            print(f"  {min(start + CHUNK, self.needs_total)}/{self.needs_total} besoins", flush=True)
        # The queue « À qualifier »: recent requests waiting for staff, no need yet.
        rows = defaultdict(list)
        for _ in range(QUEUE_SIZE):
            ids["solicitation"] += 1
            commune = rng.choices(self.communes, cum_weights=self.commune_weights)[0]
            created = self.now - timedelta(hours=rng.randint(1, 24 * 14))
            person = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
            siret = f"9{rng.randint(0, 10**13 - 1):013d}"
            email = f"demande{ids['solicitation']}@{rng.choice(MAIL_DOMAINS)}"
            description = " ".join(rng.sample(SENTENCES, 2))
            document = self.build_document(names=(person,), siret=siret, email=email, description=description)
            rows["solicitations"].append(
                (
                    ids["solicitation"], rng.choice(self.subjects), "in_progress", person, email, "0600000000",
                    siret, commune[3], commune[0], description, None, '["Mode revue"]', None, document, created,
                    created,
                )
            )  # fmt: skip
        self._write(rows)
        return {table: ids[key] for table, key in (
            ("companies", "company"), ("facilities", "facility"), ("contacts", "contact"),
            ("solicitations", "solicitation"), ("needs", "need"), ("matches", "match"),
        )}  # fmt: skip

    def _match_status(self, need_status: str, index: int) -> str:
        """The first match carries the need's status; the others stayed silent or declined."""
        if need_status == "not_for_me":
            return "not_for_me"
        if index == 0:
            return need_status
        return self.rng.choice(("quo", "quo", "not_for_me"))

    def _write(self, rows: dict[str, list[tuple]]) -> None:
        columns = {
            "companies": ["id", "siren", "name", "created_at", "updated_at"],
            "facilities": ["id", "company_id", "siret", "commune_code", "created_at", "updated_at"],
            "contacts": ["id", "company_id", "full_name", "email", "phone", "created_at", "updated_at"],
            "solicitations": [
                "id", "subject_id", "status", "full_name", "email", "phone", "siret", "postal_code", "insee_code",
                "description", "company_name", "qualification_notes", "processed_at", "search_document",
                "created_at", "updated_at",
            ],
            "needs": [
                "id", "solicitation_id", "subject_id", "facility_id", "contact_id", "description", "status",
                "search_document", "created_at", "updated_at",
            ],
            "matches": [
                "id", "need_id", "expert_id", "status", "zone", "zone_owner", "taken_care_at", "closed_at",
                "created_at", "updated_at",
            ],
        }  # fmt: skip
        for table in reversed(REQUEST_TABLES):
            if rows.get(table):
                _copy(self.conn, table, columns[table], rows[table])


@contextmanager
def _indexes_built_afterwards(app, url: str, conn: psycopg.Connection) -> Iterator[None]:
    """Drop the request tables' secondary indexes for the load, then build them as declared,
    one connection per core (the two full-text GIN indexes first: they take the longest)."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from app.extensions import db

    with app.app_context():
        tables = [db.metadata.tables[name] for name in REQUEST_TABLES]
    indexes = sorted(
        (index for table in tables for index in table.indexes),
        key=lambda index: index.dialect_options["postgresql"].get("using") != "gin",
    )
    for index in indexes:
        conn.execute(f'DROP INDEX IF EXISTS "{index.name}"')
    yield
    conn.commit()
    started = time.perf_counter()
    dialect = postgresql.dialect()

    def build(index) -> None:
        with psycopg.connect(_libpq_url(url), autocommit=True) as own:
            own.execute("SET maintenance_work_mem = '256MB'")
            own.execute(str(CreateIndex(index).compile(dialect=dialect)))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(build, indexes))
    print(f"index construits en {time.perf_counter() - started:.1f} s")


def existing_shape(url: str) -> str | None:
    """The data shape a kept database holds, ``None`` when there is none."""
    try:
        with psycopg.connect(_libpq_url(url)) as conn:
            if conn.execute("SELECT to_regclass('needs')").fetchone()[0] is None:
                return None
            return conn.execute("SELECT obj_description('needs'::regclass, 'pg_class')").fetchone()[0]
    except psycopg.OperationalError:
        return None


def prepare(app, url: str, scale: float, book: float, *, reuse: bool) -> dict[str, int]:
    from app.extensions import db
    from app.services.reference.catalog import load_catalog
    from app.services.reference.geo import load_territories

    if reuse:
        print(f"données déjà générées ({data_shape(scale, book)})")
    else:
        started = time.perf_counter()
        with app.app_context():
            db.create_all()
            print("chargement des territoires et du catalogue…")
            load_territories(app.config["GEO_DATA_DIR"])
            load_catalog(app.config["CATALOG_DEFAULT_PATH"])
            db.session.commit()
            db.session.remove()
        with psycopg.connect(_libpq_url(url)) as conn:
            with addressbook_scale(book):
                routing.generate(conn)
            conn.commit()
            print(f"annuaire généré ({time.perf_counter() - started:.1f} s depuis le début)")
            conn.execute("ANALYZE zones; ANALYZE experts")
            # Foreign keys are checked by the generator's construction, not row by row.
            conn.execute("SET session_replication_role = replica")
            with _indexes_built_afterwards(app, url, conn):
                counts = Generator(conn, scale, datetime.now(UTC)).run()
                print(f"demandes générées ({time.perf_counter() - started:.1f} s depuis le début) : {counts}")
            for table in REQUEST_TABLES:
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            conn.execute(f"COMMENT ON TABLE needs IS '{data_shape(scale, book)}'")
            conn.commit()
        print(f"base prête en {time.perf_counter() - started:.1f} s")
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # index-only counts need the visibility map
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("experts", *reversed(REQUEST_TABLES))
        }


# ---------------------------------------------------------------- measurement


class SqlClock:
    """Counts the statements of a request and the time spent in them."""

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0
        self._started: list[int] = []

    def before(self, *_args) -> None:
        self._started.append(time.perf_counter_ns())

    def after(self, *_args) -> None:
        self.count += 1
        self.ns += time.perf_counter_ns() - self._started.pop()

    def reset(self) -> None:
        self.count = 0
        self.ns = 0


def _login(client, email: str, password: str) -> None:
    page = client.get("/connexion").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/connexion", data={"email": email, "password": password, "csrf_token": token})
    if response.status_code != 302:
        raise SystemExit(f"connexion refusée ({response.status_code})")


def _filter_arg(app, endpoint: str, name: str) -> str:
    view = next(v for v in app.extensions["pde_admin"]._views if getattr(v, "endpoint", "") == endpoint)
    return next(key for key, (_i, flt) in view._filter_args.items() if flt.name == name)


def pages(app, rng: random.Random, count: int, volumes: dict[str, int]) -> dict[str, list[str]]:
    """Each page's URLs, ``count`` of them, with values drawn like staff would use them."""
    from app.extensions import db

    with app.app_context():
        session = db.session
        departements = [
            r[0]
            for r in session.execute(
                text(
                    "SELECT c.departement_code FROM needs n JOIN facilities f ON f.id = n.facility_id "
                    "JOIN communes c ON c.code = f.commune_code WHERE n.id = ANY(:ids)"
                ),
                {"ids": [rng.randint(1, volumes["needs"]) for _ in range(count)]},
            )
        ] or ["69"]
        names = [
            r[0]
            for r in session.execute(
                text("SELECT name FROM companies WHERE id = ANY(:ids)"),
                {"ids": [rng.randint(1, volumes["companies"]) for _ in range(count * 2)]},
            )
        ]
        sirets = [
            r[0]
            for r in session.execute(
                text("SELECT siret FROM facilities WHERE id = ANY(:ids)"),
                {"ids": [rng.randint(1, volumes["facilities"]) for _ in range(count * 2)]},
            )
        ]
        institutions = [r[0] for r in session.execute(text("SELECT id FROM institutions ORDER BY id"))]
        session.remove()
        dep, status = _filter_arg(app, "need", "Département"), _filter_arg(app, "need", "Statut")
        no_taker = _filter_arg(app, "need", "Sans preneur depuis")
        institution = _filter_arg(app, "match", "Institution")

    def cycle(values: list, make) -> list[str]:
        return [make(values[i % len(values)]) for i in range(count)]

    return {
        "besoins — liste": ["/admin/need/"] * count,
        "besoins — département + statut": cycle(
            departements, lambda d: f"/admin/need/?flt0_{dep}={d}&flt1_{status}=quo"
        ),
        "besoins — sans preneur depuis 5 jours": [f"/admin/need/?flt0_{no_taker}=5"] * count,
        "besoins — recherche d'une entreprise": cycle(names, lambda n: f"/admin/need/?search={n}"),
        "besoins — recherche d'un SIRET": cycle(sirets, lambda s: f"/admin/need/?search={s}"),
        "besoins — page 100": ["/admin/need/?page=99"] * count,
        "mises en relation — liste": ["/admin/match/"] * count,
        "mises en relation — institution": cycle(
            institutions[:: max(1, len(institutions) // count)] or [1],
            lambda i: f"/admin/match/?flt0_{institution}={i}",
        ),
        "sollicitations — À qualifier": ["/admin/solicitation/?onglet=a-qualifier"] * count,
    }


def measure(app, urls: dict[str, list[str]], warmup: int) -> dict[str, dict]:
    from app.extensions import db
    from app.services.accounts.users import create_user

    password = secrets.token_urlsafe(24)
    email = f"bench-{secrets.token_hex(4)}@place.example"
    with app.app_context():
        create_user(email, role="admin", password=password, full_name="Banc d'essai")
        db.session.commit()
        engine = db.engine
    clock = SqlClock()
    event.listen(engine, "before_cursor_execute", clock.before)
    event.listen(engine, "after_cursor_execute", clock.after)
    results = {}
    try:
        with app.test_client() as client:
            _login(client, email, password)
            for label, page_urls in urls.items():
                samples, sql_counts, sql_ns, sizes = [], [], [], []
                for index, url in enumerate([*page_urls[:warmup], *page_urls]):
                    clock.reset()
                    started = time.perf_counter_ns()
                    response = client.get(url)
                    elapsed = time.perf_counter_ns() - started
                    if response.status_code != 200:
                        raise SystemExit(f"{label} : {url} → {response.status_code}")
                    if index >= warmup:
                        samples.append(elapsed)
                        sql_counts.append(clock.count)
                        sql_ns.append(clock.ns)
                        sizes.append(len(response.data))
                latency = _percentiles(samples)
                results[label] = {
                    "ms": latency,
                    "sql_statements": max(sql_counts),
                    "sql_ms_p50": round(statistics.median(sql_ns) / 1e6, 1),
                    "html_kb": round(statistics.median(sizes) / 1024),
                    "example": page_urls[0],
                }
                print(f"  {label:42} p50 {latency['p50']:8.1f}  p95 {latency['p95']:8.1f} ms", flush=True)
    finally:
        event.remove(engine, "before_cursor_execute", clock.before)
        event.remove(engine, "after_cursor_execute", clock.after)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Latence des listes du suivi à l'échelle nationale.")
    parser.add_argument("--requests", type=int, default=40, help="requêtes mesurées par page")
    parser.add_argument("--warmup", type=int, default=5, help="requêtes jouées avant la mesure")
    parser.add_argument("--keep", action="store_true", help="garde la base (et la réutilise au prochain --keep)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction du volume (1.0 : 400 000 besoins)")
    parser.add_argument(
        "--addressbook",
        type=float,
        default=NATIONAL_ADDRESSBOOK,
        help="taille de l'annuaire, en fraction de celui de bench.routing (0.1 : échelle nationale)",
    )
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_LISTS_DATABASE_URL", DEFAULT_URL)
    # A fresh database, unless --keep finds one holding the same data.
    reuse = args.keep and existing_shape(url) == data_shape(args.scale, args.addressbook)
    if not reuse:
        drop_database(url)
    ensure_database(url)
    from app import create_app

    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, RATELIMIT_ENABLED=False, WTF_CSRF_ENABLED=True)
    try:
        counts = prepare(app, url, args.scale, args.addressbook, reuse=reuse)
        print(f"volumes : {counts}\n")
        urls = pages(app, random.Random(SEED + 1), args.requests, counts)
        with app.app_context():
            from app.extensions import db

            server = db.session.scalar(text("SHOW server_version"))
        results = measure(app, urls, args.warmup)
    finally:
        with app.app_context():
            from app.extensions import db

            db.session.remove()
            db.engine.dispose()
        if not args.keep:
            drop_database(url)

    out = io.StringIO()
    out.write(f"\nListes du suivi — {args.requests} requêtes par page (après {args.warmup} d'échauffement)\n")
    out.write(f"volumes : {counts}\ncharge : {round(os.getloadavg()[0], 2)} sur {os.cpu_count()} cœurs\n\n")
    out.write(f"{'page':42}{'p50':>9}{'p95':>9}{'SQL':>6}{'SQL p50':>10}{'HTML':>8}\n")
    for label, row in results.items():
        ms = row["ms"]
        out.write(
            f"{label:42}{ms['p50']:>9.1f}{ms['p95']:>9.1f}{row['sql_statements']:>6}"
            f"{row['sql_ms_p50']:>10.1f}{row['html_kb']:>6} ko\n"
        )
    met = all(row["ms"]["p95"] < TARGET_P95_MS for row in results.values())
    out.write(f"\ncible : p95 < {TARGET_P95_MS:.0f} ms pour chaque page → {'atteinte' if met else 'non atteinte'}\n")
    print(out.getvalue())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "requests": args.requests,
                "warmup": args.warmup,
                "scale": args.scale,
                "addressbook": args.addressbook,
                "dataset": counts,
                "pages": results,
                "target_p95_ms": TARGET_P95_MS,
                "meets_target": met,
                "postgresql": server,
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
    print(f"écrit : {RESULTS}")
    # Like the other benchmarks, a missed target is reported, not an error: only a page that
    # does not answer 200 fails the run (``make bench`` goes on).
    return 0


if __name__ == "__main__":
    sys.exit(main())
