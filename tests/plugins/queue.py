"""A real Redis for the tests, apps whose jobs go through it, and a real RQ worker to run them.

Fixtures:

- ``redis_url``: a Redis database on 127.0.0.1:6379 (14, or the next free one down to 8 when
  another test run holds it: RQ's keys have fixed names), emptied before and after the test.
  Without Redis the test is skipped on a laptop and fails in CI (``CI=true``).
  ``TEST_REDIS_URL`` pins another one.
- ``make_redis_app(**overrides)``: builds an app (test database) whose jobs are enqueued in that
  Redis (``RQ_ASYNC=True``) instead of running inline.
- ``worker_app``: the usual end-to-end app: Redis queues, real SMTP (``smtp_server``), test
  email templates. Cause something, commit, then ``run_worker(worker_app)``; the emails are in
  ``smtp_server.messages``.
- ``run_worker(app, queues=None)``: runs a real RQ worker in burst mode on the app's queues
  until they are empty, and returns it; ``.succeeded`` and ``.failed`` list the ids of the jobs
  it ran.
- ``flask_command(app, *args, **env)``: the argv and environment of a real ``flask`` process
  (``flask rq worker``, ``flask rq cron``…) on the app's database, Redis and SMTP settings, as
  the Procfile starts it.

The worker is RQ's ``SimpleWorker`` in this process, inside the app's context: real Redis,
real job serialisation, the same ``FlaskJob`` class. ``flask rq worker`` in production
(``app/workers.py``) runs the emails in its own process and every other job in a ``flask rq
work-horse`` subprocess rebuilt from the environment; the tests that need that real command
start it with ``flask_command``.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker

from tests.plugins.mail import add_test_templates, smtp_settings

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parent.parent.parent
REDIS_BASE_URL = "redis://127.0.0.1:6379"
CANDIDATE_DBS = (14, 13, 12, 11, 10, 9, 8)
LOCK_KEY = "pde-tests:run"
# Renewed by every test that uses Redis; short, so a run killed midway frees its database soon.
CLAIM_SECONDS = 15 * 60
RUN_ID = uuid.uuid4().hex


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2)


@pytest.fixture(scope="session")
def _redis_db_url():
    """The Redis database this test run owns (None when Redis is down)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    for number in CANDIDATE_DBS:
        url = f"{REDIS_BASE_URL}/{number}"
        client = _client(url)
        try:
            owned = client.set(LOCK_KEY, RUN_ID, nx=True, ex=CLAIM_SECONDS) or client.get(LOCK_KEY) == RUN_ID.encode()
        except redis.exceptions.ConnectionError:
            client.close()
            yield None
            return
        if owned:
            try:
                yield url
            finally:
                if client.get(LOCK_KEY) == RUN_ID.encode():
                    client.delete(LOCK_KEY)
                client.close()
            return
        client.close()
    pytest.fail(f"Redis : les bases {CANDIDATE_DBS} sont toutes prises par d'autres exécutions des tests.")


def _flush(url: str) -> bool:
    """Empty the run's database, keeping its ownership mark."""
    client = _client(url)
    try:
        client.flushdb()
        client.set(LOCK_KEY, RUN_ID, ex=CLAIM_SECONDS)
        return True
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()


@pytest.fixture
def redis_url(_redis_db_url):
    if _redis_db_url is None or not _flush(_redis_db_url):
        where = _redis_db_url or REDIS_BASE_URL
        if IN_CI:
            pytest.fail(f"CI=true mais Redis ne répond pas ({where}) : les tests de file d'attente l'exigent.")
        pytest.skip(f"Redis absent sur ce poste ({where})")
    yield _redis_db_url
    _flush(_redis_db_url)


def redis_settings(url: str) -> dict:
    """Settings sending jobs to the Redis at ``url`` (what ``REDIS_URL`` does in production)."""
    return {"REDIS_URL": url, "RQ_CONNECTION": url, "RQ_CONNECTION_CLASS": "redis.Redis", "RQ_ASYNC": True}


@pytest.fixture
def make_redis_app(make_app, redis_url):
    def build(**overrides):
        built = make_app(**{**redis_settings(redis_url), **overrides})
        add_test_templates(built)
        return built

    return build


@pytest.fixture
def worker_app(make_redis_app, smtp_server):
    return make_redis_app(**smtp_settings(smtp_server))


class CountingWorker(SimpleWorker):
    """RQ's in-process worker, remembering which jobs it ran (RQ keeps its counters in Redis only)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.succeeded: list[str] = []
        self.failed: list[str] = []

    def handle_job_success(self, job, queue, *args, **kwargs):
        self.succeeded.append(job.id)
        return super().handle_job_success(job, queue, *args, **kwargs)

    def handle_job_failure(self, job, queue, *args, **kwargs):
        self.failed.append(job.id)
        return super().handle_job_failure(job, queue, *args, **kwargs)


def work(flask_app, queues: list[str] | None = None) -> CountingWorker:
    """Run a burst RQ worker on ``flask_app``'s queues (all of them by default) until they are empty."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with flask_app.app_context():
        extension = flask_app.extensions["rq"]
        chosen = [extension.get_queue(name) for name in (queues or flask_app.config["RQ_QUEUES"])]
        worker = CountingWorker(chosen, connection=chosen[0].connection, job_class=chosen[0].job_class)
        try:
            worker.work(burst=True, logging_level="WARNING")
        finally:
            # The worker installs its own SIGINT/SIGTERM handlers; give pytest its own back.
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return worker


@pytest.fixture
def run_worker():
    return work


def flask_command(flask_app, *args: str, **env: str) -> tuple[list[str], dict[str, str]]:
    """``flask --app app <args>`` as a real process on ``flask_app``'s database, Redis and SMTP
    server (development settings otherwise), with ``env`` on top."""
    config = flask_app.config
    environment = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": config.get("REDIS_URL") or "",
        "MAIL_SERVER": config.get("MAIL_SERVER") or "",
        "MAIL_PORT": str(config.get("MAIL_PORT") or 25),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    flask = ROOT / ".venv" / "bin" / "flask"
    argv = [sys.executable, str(flask)] if flask.exists() else [sys.executable, "-m", "flask"]
    return [*argv, "--app", "app", *args], environment
