"""Partners' channels (issue 16) through gunicorn, beside the same floor as the public form.

Three paths a person waits on, on the database and servers of ``bench.form`` (same set-up, same
demo data, same gunicorn, Redis and ``flask rq worker``):

* ``api``: ``POST /api/v1/solicitations`` with a bearer key made by ``flask apikeys create`` —
  the key checked (hash, expiry, revocation), the call audited, the request validated, stored,
  routed and its emails queued, then 201;
* ``iframe``: a business in a partner's frame — ``GET /iframe/<landing>/demande/recrutement``
  then its ``POST`` with our ``Origin`` and no cookie (the frame's CSRF), 303;
* the floor: ``bench/bare_app.py``, one INSERT per POST.

And the embedded landing's catalog page (``GET /iframe/<landing>``), the first thing the frame
loads. Usage: ``python -m bench.partners [--requests 1000] [--threads 4] [--workers 2]``.
Results go to ``bench/results/partners.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.form import (
    _HIDDEN,
    BENCH_REDIS_URL,
    DEFAULT_URL,
    ROOT,
    SUBJECT,
    VENV_BIN,
    Run,
    app_environment,
    bare_client,
    ensure_database,
    gunicorn,
    libpq_url,
    load,
    percentiles,
    prepare,
    reset,
    rq_worker,
    stored,
    submission,
)

RESULTS = Path(__file__).resolve().parent / "results" / "partners.json"
LANDING = "portail-entrepreneur"
EMBEDDED = f"/iframe/{LANDING}/demande/{SUBJECT}"


def new_key(url: str) -> str:
    env = app_environment(url)
    done = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "apikeys", "create", "cci-france", "--label", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"flask apikeys create a échoué :\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def api_client(key: str) -> Callable[[str], Callable[[httpx.Client, int, Run], None]]:
    def make(_base: str) -> Callable[[httpx.Client, int, Run], None]:
        def submit(client: httpx.Client, index: int, run: Run) -> None:
            body = {**submission(index), "subject": SUBJECT, "origin_url": "https://partenaire.example/aides"}
            body.pop("telecopie")
            started = time.perf_counter()
            response = client.post("/api/v1/solicitations", json=body, headers={"Authorization": f"Bearer {key}"})
            done = time.perf_counter()
            with run.lock:
                if response.status_code == 201:
                    run.posts += 1
                    run.post_ms.append((done - started) * 1000)
                else:
                    run.failures.append(f"POST {response.status_code}: {response.text[:300]}")

        return submit

    return make


def iframe_client(base: str) -> Callable[[httpx.Client, int, Run], None]:
    def submit(client: httpx.Client, index: int, run: Run) -> None:
        client.cookies.clear()  # a frame on another site: no cookie of ours
        started = time.perf_counter()
        page = client.get(EMBEDDED)
        got = time.perf_counter()
        found = _HIDDEN["served_at"].search(page.text)
        if page.status_code != 200 or not found:
            run.failures.append(f"GET {page.status_code}: {page.text[:300]}")
            return
        data = {**submission(index), "served_at": found.group(1)}
        response = client.post(EMBEDDED, data=data, headers={"Origin": base})
        done = time.perf_counter()
        with run.lock:
            run.get_ms.append((got - started) * 1000)
            if response.status_code == 303:
                run.posts += 1
                run.post_ms.append((done - got) * 1000)
            else:
                run.failures.append(f"POST {response.status_code}: {response.text[:300]}")

    return submit


def catalog_pages(base: str, count: int) -> list[float]:
    timings = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(f"/iframe/{LANDING}")
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET /iframe/{LANDING} : {response.status_code}")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="L'API et le formulaire intégré des partenaires, à travers gunicorn.")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--skip-setup", action="store_true")
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_FORM_DATABASE_URL", DEFAULT_URL)
    if (make_url(url).host or "") not in {"127.0.0.1", "localhost", "::1", ""}:
        raise SystemExit("base hors de la boucle locale refusée")
    ensure_database(url)
    if not args.skip_setup:
        prepare(url)
    reset(url)
    key = new_key(url)
    env = app_environment(url, redis_url=BENCH_REDIS_URL)
    bare_env = {**app_environment(url), "BENCH_BARE_DSN": libpq_url(url)}
    options = {"threads": args.threads, "max_seconds": args.max_seconds}
    with rq_worker(env), gunicorn("app:create_app()", env, args.workers, "/healthz") as base:
        warm = load(base, api_client(key), first_index=0, requests=args.warmup, **options)
        if warm.failures:
            raise SystemExit(f"l'échauffement de l'API échoue : {warm.failures[:3]}")
        api = load(base, api_client(key), first_index=args.warmup, requests=args.requests, **options)
        start = args.warmup + args.requests
        load(base, iframe_client, first_index=start, requests=args.warmup, **options)
        frame = load(base, iframe_client, first_index=start + args.warmup, requests=args.requests, **options)
        catalog = catalog_pages(base, 200)
    with gunicorn("bench.bare_app:app", bare_env, args.workers, "/") as base:
        load(base, bare_client, first_index=0, requests=args.warmup, **options)
        bare = load(base, bare_client, first_index=args.warmup, requests=args.requests, **options)
    counts = stored(url)
    rates = {
        name: (run.posts / run.seconds if run.seconds else 0.0)
        for name, run in (("api", api), ("iframe", frame), ("bare", bare))
    }
    complete = not (api.failures or frame.failures or bare.failures)
    result = {
        "api": api.summary(),
        "iframe": {**frame.summary(), "note": "chaque POST suit un GET du formulaire intégré, sans cookie"},
        "iframe_catalog_get_ms": percentiles(catalog),
        "bare": bare.summary(),
        "ratio_bare_over_api": round(rates["bare"] / rates["api"], 1) if rates["api"] else None,
        "ratio_bare_over_iframe": round(rates["bare"] / rates["iframe"], 1) if rates["iframe"] else None,
        "stored_after_run": counts,
        "settings": {"requests": args.requests, "threads": args.threads, "gunicorn_workers": args.workers},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "complete": complete,
    }
    out = io.StringIO()
    out.write(
        f"\nCanaux des partenaires — {args.requests} envois par côté, {args.threads} clients, gunicorn -w {args.workers}\n\n"
    )
    out.write(f"{'':38}{'envois/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'échecs':>8}\n")
    for label, run, rate in (
        ("API (POST /api/v1/solicitations)", api, rates["api"]),
        ("formulaire intégré (GET puis POST)", frame, rates["iframe"]),
        ("plancher : un INSERT", bare, rates["bare"]),
    ):
        stats = percentiles(run.post_ms)
        out.write(
            f"{label:38}{rate:>10.1f}{stats.get('p50', 0):>9.2f}{stats.get('p95', 0):>9.2f}{len(run.failures):>8}\n"
        )
    cat = percentiles(catalog)
    out.write(f"{'page de la landing intégrée (GET)':38}{'':>10}{cat['p50']:>9.2f}{cat['p95']:>9.2f}\n")
    for run in (api, frame, bare):
        for failure in run.failures[:3]:
            out.write(f"échec : {failure}\n")
    print(out.getvalue())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
