"""Email delivery at volume, through the real outbox, Redis and ``flask rq worker``, beside a raw
smtplib loop to the same relay (the floor).

What is measured, in one run, against one local relay (``bench/smtp_sink.py``: aiosmtpd in its
own process, refusing lines over 1,000 characters like a real relay):

* **floor**: the N messages, built beforehand, sent by a bare ``smtplib`` loop, one connection
  per message;
* **burst**: N emails written by ``queue_email`` in one transaction (a weekly digest to N
  experts, each description a one-paragraph 1,200-character text), then the clock runs from the
  commit (which hands them to Redis) until every row is ``sent``, delivered by one real
  ``flask rq worker`` started beforehand, as in production. The worker's resident memory is
  sampled throughout (``/proc/<pid>/status``), and the relay's own count must equal N;
* **one email**: the time from the commit of one email to its row ``sent``, the worker idle
  (what an expert waits for, after the business submits), beside one smtplib send;
* **sweep**: 100,000 rows due at once (a day of SMTP outage): the time and the Python memory of
  ``sweep_outbox()``, which must not read them all.

Database ``pde_bench_delivery`` (``BENCH_DELIVERY_DATABASE_URL``), schema by ``flask db upgrade``;
Redis ``BENCH_REDIS_URL`` (database 11), flushed. Loopback only.

Usage: ``python -m bench.delivery [--emails 10000] [--sweep-rows 100000]``. Results go to
``bench/results/delivery.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench.form import BENCH_REDIS_URL, app_environment, ensure_database, free_port, libpq_url, rq_worker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "delivery.json"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/pde_bench_delivery"
VENV_BIN = Path(sys.executable).parent
DESCRIPTION = (
    "Boulangerie-pâtisserie de 6 salariés créée en 2019, nous souhaitons recruter deux apprentis et un "
    "vendeur pour la rentrée ; malgré nos annonces, aucune candidature sérieuse. "
) * 7


@contextmanager
def relay() -> Iterator[tuple[int, Path]]:
    """The local relay, and the file where it writes how many messages it accepted."""
    port = free_port()
    count_file = Path(tempfile.mkstemp(prefix="bench-smtp-", suffix=".count")[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_sink", str(port), str(count_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit("le relais SMTP de mesure n'a pas démarré")
        yield port, count_file
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        count_file.unlink(missing_ok=True)


def accepted(count_file: Path) -> int:
    text = count_file.read_text().strip()
    return int(text) if text else 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(condition, *, timeout: float, every: float = 0.002, sample=None) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"délai dépassé ({timeout:.0f} s)")
        if sample:
            sample()
        time.sleep(every)
    return time.perf_counter() - started


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Envoi des courriels en volume, au plus près du plancher SMTP.")
    parser.add_argument("--emails", type=int, default=10_000, help="courriels de la rafale")
    parser.add_argument("--singles", type=int, default=20, help="courriels isolés pour la latence")
    parser.add_argument("--sweep-rows", type=int, default=100_000, help="lignes dues pour la mesure du balayage")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_DELIVERY_DATABASE_URL", DEFAULT_URL)
    if (make_url(url).host or "") not in {"127.0.0.1", "localhost", "::1", ""}:
        raise SystemExit("base hors de la boucle locale refusée")
    ensure_database(url)
    upgrade = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=app_environment(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if upgrade.returncode != 0:
        raise SystemExit(f"flask db upgrade a échoué :\n{upgrade.stderr}")
    dsn = libpq_url(url)

    def outbox(sql: str, *params) -> list[tuple]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    # One connection for the polling: a connection per poll would make PostgreSQL fork a backend
    # every few milliseconds, on the same two cores as the worker being measured.
    poller = psycopg.connect(dsn, autocommit=True)

    def sent() -> int:
        return poller.execute("SELECT count(*) FROM outbound_emails WHERE state = 'sent'").fetchone()[0]

    import redis

    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    outbox("TRUNCATE outbound_emails")

    with relay() as (port, count_file):
        env = {**app_environment(url, redis_url=BENCH_REDIS_URL), "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(port)}
        os.environ.update(
            {key: env[key] for key in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "MAIL_SERVER", "MAIL_PORT")}
        )
        os.environ.pop("SECRET_KEY", None)
        from app import create_app
        from app.extensions import db
        from app.services.messaging.email_wire import build_message
        from app.services.messaging.outbox import message_id_for, queue_email, sweep_outbox

        flask_app = create_app("development")
        sender = flask_app.config["MAIL_DEFAULT_SENDER"]

        # ---- the floor: prebuilt messages, one smtplib connection each
        with flask_app.app_context():
            wire = [
                (
                    f"expert{n}@cci-bench.example",
                    build_message(
                        sender=sender,
                        recipient=f"expert{n}@cci-bench.example",
                        subject=f"Une entreprise a besoin de vous : recrutement ({n})",
                        body_text=DESCRIPTION,
                        body_html=f"<p>{DESCRIPTION}</p>",
                        message_id=message_id_for(f"floor:{n}"),
                    ),
                )
                for n in range(args.emails)
            ]
        started = time.perf_counter()
        for recipient, data in wire:
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("contact@place-des-entreprises.example", [recipient], data)
        floor_seconds = time.perf_counter() - started
        del wire
        if accepted(count_file) != args.emails:
            raise SystemExit("le relais n'a pas reçu tous les messages du plancher")
        single_floor = []
        for n in range(args.singles):
            started = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail(sender, [f"seul{n}@cci-bench.example"], b"Subject: x\r\n\r\nx\r\n")
            single_floor.append((time.perf_counter() - started) * 1000)
        relay_before = accepted(count_file)

        with rq_worker(env) as process, flask_app.app_context():
            time.sleep(4)  # the worker is up and idle, as in production
            rss = [rss_mib(process.pid)]

            # ---- one email at a time: commit to « sent »
            singles = []
            for n in range(args.singles):
                queue_email(
                    f"single:{n}",
                    to=f"seul{n}@cci-bench.example",
                    template="match_new",
                    context=_match_context(n),
                )
                started = time.perf_counter()
                db.session.commit()
                wait_until(lambda n=n: sent() >= n + 1, timeout=60)
                singles.append((time.perf_counter() - started) * 1000)

            # ---- the burst: N emails in one transaction
            started = time.perf_counter()
            for n in range(args.emails):
                queue_email(
                    f"digest:{n}", to=f"expert{n}@cci-bench.example", template="match_new", context=_match_context(n)
                )
            written = time.perf_counter() - started
            started = time.perf_counter()
            db.session.commit()
            handed_over = time.perf_counter() - started
            # What the hand-over wrote in its one pipeline (the worker may have taken some already).
            jobs = math.ceil(args.emails / flask_app.config["OUTBOX_BATCH_SIZE"])
            burst_seconds = handed_over + wait_until(
                lambda: sent() >= args.singles + args.emails,
                timeout=args.timeout,
                every=0.1,
                sample=lambda: rss.append(rss_mib(process.pid)),
            )
            rss.append(rss_mib(process.pid))
            relay_count = accepted(count_file) - relay_before
            states = dict(outbox("SELECT state, count(*) FROM outbound_emails GROUP BY state"))

        # ---- the sweep: 100,000 rows due at once, counted and asked for, never loaded
        outbox("TRUNCATE outbound_emails")
        outbox(
            "INSERT INTO outbound_emails (key, recipient, subject, body_text, state, attempts, created_at, updated_at) "
            "SELECT 'sweep:' || n, 'e' || n || '@bench.example', 'Objet', %s, 'queued', 0, "
            "now() - interval '1 day', now() FROM generate_series(1, %s) AS n",
            DESCRIPTION,
            args.sweep_rows,
        )
        outbox("ANALYZE outbound_emails")
        redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
        with flask_app.app_context():
            tracemalloc.start()
            started = time.perf_counter()
            overdue = sweep_outbox()
            sweep_seconds = time.perf_counter() - started
            sweep_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            sweep_jobs = flask_app.extensions["rq"].get_queue("emails").count
            db.session.remove()
            db.engine.dispose()
        outbox("TRUNCATE outbound_emails")
        redis.Redis.from_url(BENCH_REDIS_URL).flushdb()

    poller.close()
    floor_rate = args.emails / floor_seconds
    burst_rate = args.emails / burst_seconds
    with psycopg.connect(dsn) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    result = {
        "burst": {
            "emails": args.emails,
            "seconds": round(burst_seconds, 1),
            "emails_per_second": round(burst_rate, 1),
            "written_in_one_transaction_seconds": round(written, 1),
            "commit_and_hand_over_seconds": round(handed_over, 2),
            "jobs_enqueued": jobs,
            "relay_accepted": relay_count,
            "states": states,
            "worker_rss_mib": {
                "idle_before": round(rss[0], 1),
                "peak": round(max(rss), 1),
                "after": round(rss[-1], 1),
            },
        },
        "floor_smtplib_one_connection_per_message": {
            "seconds": round(floor_seconds, 1),
            "emails_per_second": round(floor_rate, 1),
        },
        "ratio_burst_over_floor": round(burst_rate / floor_rate, 2),
        "one_email_commit_to_sent_ms": percentiles(singles),
        "one_email_floor_smtplib_ms": percentiles(single_floor),
        "sweep": {
            "due_rows": args.sweep_rows,
            "counted": overdue,
            "seconds": round(sweep_seconds, 3),
            "python_peak_kib": round(sweep_peak / 1024, 1),
            "jobs_enqueued": sweep_jobs,
        },
        "postgresql": server_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_after": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    complete = relay_count == args.emails + args.singles and states == {"sent": args.emails + args.singles}
    return 0 if complete else 1


def _match_context(n: int) -> dict:
    """What ``match_new`` renders: a need of a bakery in Lyon, its description one long paragraph."""
    return {
        "expert_name": f"Expert {n}",
        "institution": "CCI du banc d'essai",
        "subject": "Recruter un ou plusieurs salariés",
        "company_name": "Boulangerie du banc d'essai",
        "siret": "12345678200028",
        "commune": "Lyon (69002)",
        "contact_name": "Camille Banc",
        "contact_email": "camille@boulangerie-bench.example",
        "contact_phone": "0478123456",
        "description": DESCRIPTION,
        "expert_url": f"http://127.0.0.1:5000/expert/jeton-{n}",
        "inbox_url": f"http://127.0.0.1:5000/mes-demandes/jeton-{n}",
        "other_count": 2,
    }


if __name__ == "__main__":
    raise SystemExit(main())
