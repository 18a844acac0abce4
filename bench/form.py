"""Public form throughput through gunicorn, beside a bare Flask endpoint doing one INSERT.

Two servers are started on 127.0.0.1 (free ports), each ``gunicorn -w 2`` (sync workers):

* ``form``: the application, ``gunicorn 'app:create_app()'``, with ``APP_ENV=development``,
  ``DATABASE_URL`` = the bench database, ``ROUTING_MODE=auto`` (a clean request becomes a need,
  its matches and their emails in the same transaction), ``RATELIMIT_ENABLED=false`` (one
  client address sends everything), ``FORM_MIN_SECONDS=0`` (the bot trap's minimum time), ``REDIS_URL``
  on a real Redis (``BENCH_REDIS_URL``, database 11) with a real ``flask rq worker`` delivering
  the outbox meanwhile, as in production (``--inline``: no Redis, the delivery runs inside the
  request after the commit, as in the embedded default), and no ``MAIL_SERVER`` (emails are
  written to the outbox and logged, never sent over SMTP);
* ``bare``: ``bench/bare_app.py``, one autocommitted INSERT per POST on the same database —
  the floor.

A few client threads, each with its own keep-alive ``httpx`` client (so its own session
cookie), send submissions. A form submission is what a browser does: GET the form (fresh CSRF
token and signed serve time), then POST it; only the POSTs are counted as submissions, the
rate is over the wall-clock time of both. The bare endpoint gets POSTs only. Every POST must
answer 303, and afterwards the database must hold one routed request per submission.

Each submission has its own SIRET (Luhn-valid SIREN and SIRET) and email, so the duplicate
rule never holds a request back. The request tables of the bench database are emptied before
each run, so every run starts from the same database.

Set-up (idempotent, through the commands the README gives): the database ``pde_bench_form``
(``BENCH_FORM_DATABASE_URL`` to change it) is created when missing, then ``flask db upgrade``,
``flask geo load``, ``flask catalog load`` and ``flask seed demo``; the submissions ask for
recruitment in Lyon, which the demo address book routes.

Usage: ``python -m bench.form [--requests 2000] [--threads 4] [--workers 2] [--max-seconds 30]``.
Loopback only; both servers are stopped at the end, whatever happens. Results go to
``bench/results/form.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url
from stdnum import luhn

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "form.json"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pde_bench_form"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"

# What every submission asks: recruitment in Lyon 2e, which the demo address book routes.
SUBJECT = "recrutement"
POSTAL_CODE, INSEE_CODE = "69002", "69123"
DESCRIPTION = (
    "Boulangerie de 6 salariés, nous cherchons à recruter deux apprentis et un vendeur pour la rentrée. "
    "Quelles aides à l'embauche existent et qui peut nous aider à diffuser les offres ?"
)
# Emptied before each run (their rows only come from submissions); CASCADE takes what hangs on them.
REQUEST_TABLES = ("solicitations", "companies", "facilities", "contacts", "needs", "matches", "outbound_emails")
_HIDDEN = {name: re.compile(rf'name="{name}"[^>]*value="([^"]*)"') for name in ("csrf_token", "served_at")}


# ---------------------------------------------------------------- data


def siret_for(index: int) -> str:
    """A 14-digit SIRET whose SIREN and whole number both pass Luhn, distinct per ``index``.

    SIRENs start with 8 (never La Poste's 356 000 000, which follows another rule).
    """
    siren_base = f"8{index:07d}"
    siren = siren_base + luhn.calc_check_digit(siren_base)
    nic_base = siren + "0001"
    return nic_base + luhn.calc_check_digit(nic_base)


def submission(index: int) -> dict[str, str]:
    return {
        "full_name": f"Camille Banc {index}",
        "email": f"banc{index}@entreprise-bench.example",
        "phone": "04 78 12 34 56",
        "siret": siret_for(index),
        "postal_code": POSTAL_CODE,
        "insee_code": INSEE_CODE,
        "description": DESCRIPTION,
        "telecopie": "",
    }


# ---------------------------------------------------------------- database and set-up


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    parsed = make_url(url)
    admin = libpq_url(parsed.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
            print(f"base créée : {parsed.database}")


BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


@contextmanager
def rq_worker(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A real ``flask rq worker`` delivering the outbox while the form is under load, as in
    production (its own process, competing for the same two cores); Redis emptied before and
    after."""
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    log = tempfile.NamedTemporaryFile(prefix="bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [str(VENV_BIN / "flask"), "--app", "app", "rq", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def app_environment(url: str, *, redis_url: str | None = None) -> dict[str, str]:
    """The application's environment for the bench: outbox-only mail, no limiter; jobs on
    ``redis_url`` (delivered by a worker process) or, without it, inline in the request."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "MAIL_SERVER", "SECRET_KEY", "FLASK_APP", "TEST_DATABASE_URL"}
    }
    env.update(
        APP_ENV="development",
        DATABASE_URL=url,
        RATELIMIT_ENABLED="false",
        FORM_MIN_SECONDS="0",
        ROUTING_MODE="auto",
        COMPANY_REGISTRY="fake",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare(url: str) -> None:
    """Schema, territories, catalog and demo address book, through the README's commands."""
    env = app_environment(url)
    for command in (["db", "upgrade"], ["geo", "load"], ["catalog", "load"], ["seed", "demo"]):
        started = time.perf_counter()
        done = subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "app", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise SystemExit(f"flask {' '.join(command)} a échoué :\n{done.stdout}\n{done.stderr}")
        print(f"flask {' '.join(command)} : {time.perf_counter() - started:.1f} s")


def reset(url: str) -> None:
    """Empty what earlier runs submitted, so every run starts from the same database."""
    from bench.bare_app import CREATE_TABLE, TABLE

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(CREATE_TABLE)
        existing = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        tables = [t for t in (*REQUEST_TABLES, TABLE) if t in existing]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        conn.execute("VACUUM ANALYZE")


def stored(url: str) -> dict[str, int]:
    from bench.bare_app import TABLE

    queries = {
        "solicitations": "SELECT count(*) FROM solicitations",
        "processed": "SELECT count(*) FROM solicitations WHERE status = 'processed'",
        "needs": "SELECT count(*) FROM needs",
        "matches": "SELECT count(*) FROM matches",
        "emails": "SELECT count(*) FROM outbound_emails",
        "bare_rows": f"SELECT count(*) FROM {TABLE}",
    }
    with psycopg.connect(libpq_url(url)) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items()}


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(target: str, env: dict[str, str], workers: int, ready_path: str) -> Iterator[str]:
    """Serve ``target`` on a free loopback port; yield its base URL; stop it (its whole process
    group, by id) on the way out."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-form-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        str(VENV_BIN / "gunicorn"),
        "--workers",
        str(workers),
        "--bind",
        f"{HOST}:{port}",
        "--log-level",
        "warning",
        "--timeout",
        "60",
        target,
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn ({target}) s'est arrêté :\n{Path(log.name).read_text()[-3000:]}")
            try:
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({target}) ne répond pas :\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        log.close()
        errors = Path(log.name).read_text()
        if "Traceback" in errors:
            print(f"journal de gunicorn ({target}), extrait :\n{errors[-2000:]}", file=sys.stderr)
        os.unlink(log.name)


# ---------------------------------------------------------------- load


@dataclass
class Run:
    """What one side measured."""

    posts: int = 0
    failures: list[str] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, object]:
        result: dict[str, object] = {
            "posts": self.posts,
            "failures": len(self.failures),
            "seconds": round(self.seconds, 3),
            "posts_per_second": round(self.posts / self.seconds, 1) if self.seconds else 0.0,
            "post_ms": percentiles(self.post_ms),
        }
        if self.get_ms:
            result["get_ms"] = percentiles(self.get_ms)
            result["gets"] = len(self.get_ms)
        if self.failures:
            result["first_failures"] = self.failures[:3]
        return result


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "mean": round(statistics.fmean(ordered), 2),
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "max": round(ordered[-1], 2),
    }


def form_client(base: str) -> Callable[[httpx.Client, int, Run], None]:
    path = f"/demande/{SUBJECT}"

    def submit(client: httpx.Client, index: int, run: Run) -> None:
        started = time.perf_counter()
        page = client.get(path)
        got = time.perf_counter()
        tokens = {name: pattern.search(page.text) for name, pattern in _HIDDEN.items()}
        if page.status_code != 200 or not all(tokens.values()):
            run.failures.append(f"GET {page.status_code}: {page.text[:300]}")
            return
        data = {**submission(index), **{name: found.group(1) for name, found in tokens.items()}}
        response = client.post(path, data=data)
        done = time.perf_counter()
        with run.lock:
            run.get_ms.append((got - started) * 1000)
            if response.status_code == 303:
                run.posts += 1
                run.post_ms.append((done - got) * 1000)
            else:
                run.failures.append(f"POST {response.status_code}: {_visible_errors(response.text)}")

    return submit


def bare_client(base: str) -> Callable[[httpx.Client, int, Run], None]:
    def submit(client: httpx.Client, index: int, run: Run) -> None:
        started = time.perf_counter()
        response = client.post("/", data=submission(index))
        done = time.perf_counter()
        with run.lock:
            if response.status_code == 303:
                run.posts += 1
                run.post_ms.append((done - started) * 1000)
            else:
                run.failures.append(f"POST {response.status_code}: {response.text[:300]}")

    return submit


def _visible_errors(html: str) -> str:
    """The French error messages of a re-rendered form, to say why a POST was refused."""
    messages = re.findall(r'class="fr-error-text"[^>]*>\s*([^<]+)', html) or re.findall(r"<title>([^<]+)", html)
    return " | ".join(m.strip() for m in messages)[:300] or html[:300]


def load(
    base: str,
    make: Callable[[str], Callable[[httpx.Client, int, Run], None]],
    *,
    first_index: int,
    requests: int,
    threads: int,
    max_seconds: float,
) -> Run:
    """``requests`` submissions from ``threads`` keep-alive clients, stopped after ``max_seconds``."""
    run = Run()
    indexes = itertools.count(first_index)
    stop_at = first_index + requests
    submit = make(base)
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
            while time.monotonic() < deadline and len(run.failures) < 20:
                index = next(indexes)
                if index >= stop_at:
                    return
                try:
                    submit(client, index, run)
                except httpx.HTTPError as error:
                    with run.lock:
                        run.failures.append(f"{type(error).__name__}: {error}")

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(max_seconds + 60)
    run.seconds = time.perf_counter() - started
    return run


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Débit du formulaire public à travers gunicorn.")
    parser.add_argument("--requests", type=int, default=2000, help="envois mesurés de chaque côté")
    parser.add_argument("--warmup", type=int, default=100, help="envois avant la mesure, non comptés")
    parser.add_argument("--threads", type=int, default=4, help="clients simultanés")
    parser.add_argument("--workers", type=int, default=2, help="workers gunicorn de chaque serveur")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="durée maximale de chaque mesure")
    parser.add_argument("--skip-setup", action="store_true", help="ne relance pas db upgrade / geo / catalog / seed")
    parser.add_argument(
        "--inline",
        action="store_true",
        help="sans Redis : l'envoi des courriels se fait dans la requête (installation embarquée)",
    )
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_FORM_DATABASE_URL", DEFAULT_URL)
    host = make_url(url).host or ""
    if host not in {"127.0.0.1", "localhost", "::1", ""}:
        raise SystemExit(f"base hors de la boucle locale refusée : {host}")
    ensure_database(url)
    if not args.skip_setup:
        prepare(url)
    reset(url)

    load_before = round(os.getloadavg()[0], 2)
    env = app_environment(url, redis_url=None if args.inline else BENCH_REDIS_URL)
    bare_env = {**app_environment(url), "BENCH_BARE_DSN": libpq_url(url)}
    options = {"threads": args.threads, "max_seconds": args.max_seconds}
    worker = contextlib.nullcontext() if args.inline else rq_worker(env)
    with worker, gunicorn("app:create_app()", env, args.workers, "/healthz") as base:
        warmup = load(base, form_client, first_index=0, requests=args.warmup, **options)
        if warmup.failures:
            raise SystemExit(f"l'échauffement du formulaire échoue : {warmup.failures[:3]}")
        form = load(base, form_client, first_index=args.warmup, requests=args.requests, **options)
    with gunicorn("bench.bare_app:app", bare_env, args.workers, "/") as base:
        load(base, bare_client, first_index=0, requests=args.warmup, **options)
        bare = load(base, bare_client, first_index=args.warmup, requests=args.requests, **options)
    counts = stored(url)

    form_rate = form.posts / form.seconds if form.seconds else 0.0
    bare_rate = bare.posts / bare.seconds if bare.seconds else 0.0
    submitted = args.warmup + form.posts
    complete = (
        not form.failures
        and not bare.failures
        and counts["solicitations"] == submitted
        and counts["processed"] == submitted
        and counts["needs"] == submitted
    )
    with psycopg.connect(libpq_url(url)) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    result = {
        "form": {**form.summary(), "note": "chaque POST suit un GET du formulaire (jeton CSRF, heure signée)"},
        "bare": bare.summary(),
        "ratio_bare_over_form": round(bare_rate / form_rate, 1) if form_rate else None,
        "stored_after_run": counts,
        "matches_per_need": round(counts["matches"] / counts["needs"], 1) if counts["needs"] else 0,
        "settings": {
            "requests": args.requests,
            "warmup": args.warmup,
            "client_threads": args.threads,
            "gunicorn_workers": args.workers,
            "worker_class": "sync",
            "routing_mode": "auto",
            "jobs": "inline (pas de REDIS_URL)" if args.inline else "Redis + un flask rq worker",
            "mail": "outbox seulement (pas de MAIL_SERVER)",
            "subject": SUBJECT,
            "commune": INSEE_CODE,
        },
        "postgresql": server_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1min": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "complete": complete,
    }

    out = io.StringIO()
    out.write(f"\nFormulaire public — {args.requests} envois par côté, {args.threads} clients, ")
    out.write(f"gunicorn -w {args.workers} (sync), après {args.warmup} envois d'échauffement\n\n")
    out.write(f"{'':34}{'envois/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'échecs':>8}\n")
    for label, run, rate in (
        ("formulaire (GET puis POST)", form, form_rate),
        ("plancher : un INSERT", bare, bare_rate),
    ):
        stats = percentiles(run.post_ms)
        out.write(
            f"{label:34}{rate:>10.1f}{stats.get('p50', 0):>9.2f}{stats.get('p95', 0):>9.2f}{len(run.failures):>8}\n"
        )
    if form.get_ms:
        out.write(f"{'  dont GET du formulaire':34}{'':>10}{percentiles(form.get_ms)['p50']:>9.2f}")
        out.write(f"{percentiles(form.get_ms)['p95']:>9.2f}\n")
    out.write(f"\nrapport plancher / formulaire : {result['ratio_bare_over_form']}\n")
    out.write(f"en base après la mesure : {counts} ({result['matches_per_need']} mises en relation par besoin)\n")
    for run in (form, bare):
        for failure in run.failures[:3]:
            out.write(f"échec : {failure}\n")
    if not complete:
        out.write("ATTENTION : des envois ont échoué ou ne sont pas tous devenus des demandes transmises.\n")
    print(out.getvalue())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"écrit : {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
