"""The delivery pipeline under faults, with real processes: ``flask rq worker`` killed with
``kill -9`` in the middle of a batch, and ``flask rq cron`` through a Redis that is stopped and
restarted (a private ``redis-server`` of the test's own, so the suite's Redis stays up)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app.extensions import db as _db
from app.models import OutboundEmail
from app.services.messaging.outbox import message_id_for, queue_email, sweep_outbox
from tests.plugins.mail import free_port, smtp_settings
from tests.plugins.queue import IN_CI, ROOT, flask_command


def _wait_for(condition, *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"attendu en {timeout:.0f} s : {what}")
        time.sleep(0.05)


# Claims of a killed worker lapse after this (the default, 300 s, would make a slow test).
CLAIM_SECONDS = 3


def _lapse_claims() -> None:
    time.sleep(CLAIM_SECONDS + 0.5)


def _states() -> Counter[str]:
    _db.session.expire_all()
    return Counter(_db.session.scalars(select(OutboundEmail.state)))


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Its own process group: kill -9 takes the worker and any work-horse it started.
    with log.open("w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, process_group=0)


def _kill9(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_a_worker_killed_mid_batch_loses_nothing_and_resends_at_most_the_message_on_the_wire(
    make_redis_app, smtp_server, tmp_path
):
    built = make_redis_app(
        **smtp_settings(smtp_server), OUTBOX_SWEEP_GRACE_SECONDS=0, OUTBOX_CLAIM_SECONDS=CLAIM_SECONDS
    )
    smtp_server.hold(after=3)  # the 4th message stays on the wire, unanswered
    with built.app_context():
        ids = [
            queue_email(f"burst:{n}", to=f"expert{n}@cci.example", template="test_message", context={"name": "E"}).id
            for n in range(10)
        ]
        _db.session.commit()  # one batch of ten, handed to Redis

        argv, env = flask_command(built, "rq", "worker", OUTBOX_CLAIM_SECONDS=str(CLAIM_SECONDS))
        worker = _start(argv, env, tmp_path / "worker.log")
        try:
            _wait_for(lambda: smtp_server.waiting == 1, what="le 4e courriel en cours d'envoi")
            assert _states() == Counter({"sent": 3, "queued": 7})
        finally:
            _kill9(worker)
        smtp_server.release()  # the relay may still accept what was on the wire
        _wait_for(lambda: smtp_server.waiting == 0, timeout=5, what="le relais a répondu")

        # Nothing was lost: the killed batch's rows are due again once its claim lapses.
        assert _states() == Counter({"sent": 3, "queued": 7})
        assert sweep_outbox() == 0
        _lapse_claims()
        assert sweep_outbox() == 7
        argv, env = flask_command(built, "rq", "worker", "--burst")
        finished = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert finished.returncode == 0, finished.stderr
        assert _states() == Counter({"sent": 10})
        expected = [message_id_for(f"burst:{n}") for n in range(10)]

    received = Counter(message["Message-ID"] for message in smtp_server.messages)
    assert set(received) == set(expected)
    # At most the message that was on the wire arrived twice, under the same Message-ID.
    duplicates = {message_id: count for message_id, count in received.items() if count > 1}
    assert duplicates in ({}, {expected[3]: 2})
    assert len(ids) == 10


def test_workers_killed_at_any_moment_never_strand_a_row(make_redis_app, smtp_server, tmp_path):
    """The fault that left a row ``queued`` for ever: workers killed while starting, while
    taking a job, while sending. Whatever the moment, the sweep and one more worker deliver all."""
    built = make_redis_app(
        **smtp_settings(smtp_server),
        OUTBOX_SWEEP_GRACE_SECONDS=0,
        OUTBOX_BATCH_SIZE=5,
        OUTBOX_CLAIM_SECONDS=CLAIM_SECONDS,
    )
    with built.app_context():
        for n in range(40):
            queue_email(f"campagne:{n}", to=f"e{n}@cci.example", template="test_message", context={"name": "E"})
        _db.session.commit()
        argv, env = flask_command(built, "rq", "worker", OUTBOX_CLAIM_SECONDS=str(CLAIM_SECONDS))
        for round_number, delay in enumerate((0.3, 1.0, 1.8, 2.5)):
            worker = _start(argv, env, tmp_path / f"worker{round_number}.log")
            time.sleep(delay)
            _kill9(worker)
        _lapse_claims()
        sweep_outbox()
        finished = subprocess.run(
            [*argv, "--burst"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert finished.returncode == 0, finished.stderr
        assert _states() == Counter({"sent": 40})
    assert len({message["Message-ID"] for message in smtp_server.messages}) == 40


# ---------------------------------------------------------------- flask rq cron and Redis outages


class PrivateRedis:
    """A ``redis-server`` of the test's own, to stop and restart at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        _wait_for(lambda: _answers(client), timeout=10, what="redis-server démarré")
        client.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("CI=true mais redis-server est absent : le test de panne de Redis l'exige.")
        pytest.skip("redis-server absent sur ce poste")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


def _sweeps_enqueued(server: PrivateRedis) -> int:
    client = server.client()
    try:
        return sum(
            b"sweep_outbox_job" in (client.hget(f"rq:job:{job_id.decode()}", "description") or b"")
            for job_id in client.lrange("rq:queue:emails", 0, -1)
        )
    except redis.exceptions.ConnectionError:
        return 0
    finally:
        client.close()


def test_flask_rq_cron_rides_out_a_redis_outage(make_app, private_redis, tmp_path):
    built = make_app(REDIS_URL=private_redis.url)
    argv, env = flask_command(built, "rq", "cron", OUTBOX_SWEEP_INTERVAL_SECONDS="1", REDIS_URL=private_redis.url)
    log = tmp_path / "cron.log"
    cron = _start(argv, env, log)
    try:
        _wait_for(lambda: _sweeps_enqueued(private_redis) >= 1, what="un premier balayage programmé")

        private_redis.kill()
        time.sleep(20)  # RQ's own scheduler exited about 15 s into the outage
        assert cron.poll() is None, log.read_text()

        private_redis.start()  # empty: whatever was queued before is gone
        _wait_for(lambda: _sweeps_enqueued(private_redis) >= 1, timeout=45, what="un balayage après le retour de Redis")
        assert cron.poll() is None, log.read_text()
    finally:
        cron.send_signal(signal.SIGTERM)
        cron.wait(timeout=15)
    output = log.read_text()
    assert "Redis injoignable" in output and "Redis de nouveau joignable" in output
    assert "Traceback" not in output
