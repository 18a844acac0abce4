"""The outbox: written with its cause, delivered by a job through a real SMTP server, retried
with backoff, swept, resent; the jobs through a real Redis and real RQ workers."""

from __future__ import annotations

import logging
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import OutboundEmail
from app.models.base import utcnow
from app.services.messaging.delivery import deliver_email, retry_delay
from app.services.messaging.outbox import (
    LOGGED_ONLY,
    count_overdue,
    due_email_ids,
    message_id_for,
    queue_email,
    resend_email,
    sweep_outbox,
)
from app.services.transactions import transaction


def cause(key: str, to: str = "marie@entreprise.example", name: str = "Marie", **kwargs) -> int:
    """An event writing its email, committed like any cause would be."""
    email = queue_email(key, to=to, template="test_message", context={"name": name}, **kwargs)
    _db.session.commit()
    return email.id


def row(key: str) -> OutboundEmail:
    _db.session.expire_all()
    return _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key))


# ---------------------------------------------------------------- writing


def test_the_email_exists_only_if_its_cause_commits(smtp_app, smtp_server):
    with smtp_app.app_context():
        queue_email("event:1", to="a@example.fr", template="test_message", context={"name": "A"})
        _db.session.rollback()
        assert _db.session.scalar(select(OutboundEmail)) is None
        _db.session.commit()  # the rolled-back id is not handed over by a later commit
    assert smtp_server.messages == []


def test_an_event_writes_its_email_once(smtp_app, smtp_server):
    with smtp_app.app_context():
        first = cause("event:1")
        second = queue_email("event:1", to="other@example.fr", template="test_message", context={"name": "B"})
        _db.session.commit()
        assert second.id == first
        assert len(_db.session.scalars(select(OutboundEmail)).all()) == 1
    assert len(smtp_server.messages) == 1


def test_without_mail_server_the_email_is_logged_not_sent(email_templates, db, caplog):
    caplog.set_level(logging.INFO, logger="app.services.messaging.delivery")
    cause("event:1", to="jean@entreprise.example", name="Jean")
    email = row("event:1")
    # Not left queued (the sweep would take it forever), and the note says what happened.
    assert email.state == "sent"
    assert email.last_error == LOGGED_ONLY
    assert email.sent_at is not None
    logged = caplog.text
    assert "MAIL_SERVER absent" in logged
    assert "jean@entreprise.example" in logged
    assert "Bonjour Jean : message d'essai" in logged
    assert "Ceci est un message d'essai" in logged
    assert due_email_ids(now=utcnow() + timedelta(days=1)) == []


# ---------------------------------------------------------------- delivery


def test_the_delivered_message(smtp_app, smtp_server):
    with smtp_app.app_context():
        cause("event:1", to="zoe@entreprise.example", name="Zoé", reply_to="fil-12@reponses.example")
        email = row("event:1")
        assert (email.state, email.attempts, email.last_error) == ("sent", 1, None)
    [message] = smtp_server.messages
    assert message["Subject"] == "Bonjour Zoé : message d'essai"
    assert message["To"] == "zoe@entreprise.example"
    assert message["Reply-To"] == "fil-12@reponses.example"
    assert "contact@place-des-entreprises.example" in message["From"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Bonjour Zoé" in text and "Place des Entreprises" in text
    assert "<p>Bonjour Zoé,</p>" in html and 'lang="fr"' in html
    assert smtp_server.envelopes == [("contact@place-des-entreprises.example", ["zoe@entreprise.example"])]


def test_backoff_grows_then_repeats(app_ctx):
    assert [retry_delay(n).total_seconds() for n in range(1, 8)] == [60, 300, 1800, 7200, 21600, 21600, 21600]


def test_a_failed_attempt_waits_for_its_backoff(make_smtp_app, smtp_server):
    smtp_server.refuse(451)
    with make_smtp_app(MAIL_RETRY_DELAYS=[60, 300]).app_context():
        email_id = cause("event:1")
        email = row("event:1")
        assert (email.state, email.attempts) == ("queued", 1)
        assert "451" in email.last_error and "Refus du serveur SMTP" in email.last_error
        waited = email.next_attempt_at.replace(tzinfo=None) - email.updated_at.replace(tzinfo=None)
        assert timedelta(seconds=59) < waited < timedelta(seconds=61)

        smtp_server.accept()
        # Run again before the backoff ends (a duplicate job): nothing happens.
        assert deliver_email(email_id) == "queued"
        assert row("event:1").attempts == 1
        assert sweep_outbox() == 0
        # A minute later the sweep hands it over and it leaves.
        assert due_email_ids(now=utcnow() + timedelta(seconds=61)) == [email_id]
        email.next_attempt_at = utcnow() - timedelta(seconds=1)  # the minute has passed
        _db.session.commit()
        assert sweep_outbox() == 1
        email = row("event:1")
        assert (email.state, email.attempts, email.last_error, email.next_attempt_at) == ("sent", 2, None, None)
    assert len(smtp_server.messages) == 1


def test_after_the_last_attempt_the_email_has_failed(make_smtp_app, smtp_server):
    smtp_server.refuse(421, "Trop de connexions")
    with make_smtp_app(MAIL_MAX_ATTEMPTS=3).app_context():
        email_id = cause("event:1")
        assert sweep_outbox() == 1
        assert row("event:1").attempts == 2
        assert sweep_outbox() == 1
        email = row("event:1")
        assert (email.state, email.attempts, email.next_attempt_at) == ("failed", 3, None)
        assert "421 Trop de connexions" in email.last_error
        assert email.failure_cause == "relay"
        assert sweep_outbox() == 0
        assert deliver_email(email_id) == "failed"
    assert smtp_server.messages == []
    assert smtp_server.refused == 3


def test_a_refused_recipient_fails_at_once(smtp_app, smtp_server):
    smtp_server.refuse(550, "Boîte inconnue", at="RCPT")
    with smtp_app.app_context():
        cause("event:1", to="inconnu@entreprise.example")
        email = row("event:1")
        assert (email.state, email.attempts) == ("failed", 1)
        assert "Destinataire refusé" in email.last_error and "550" in email.last_error
        assert "inconnu@entreprise.example" in email.last_error
        assert email.failure_cause == "recipient"


def test_an_unreachable_smtp_server_is_retried(make_smtp_app):
    with make_smtp_app(MAIL_PORT=1).app_context():
        cause("event:1")
        email = row("event:1")
        assert (email.state, email.attempts) == ("queued", 1)
        assert email.last_error.startswith("Serveur SMTP injoignable")
        assert email.next_attempt_at is not None
        assert email.failure_cause == "relay"


def test_a_message_that_cannot_be_built_ends_as_failed_not_retried_forever(make_smtp_app, smtp_server):
    with make_smtp_app(MAIL_MAX_ATTEMPTS=2).app_context():
        cause("event:1", to="victime@example.fr\nBcc: spam@example.fr")  # a header injection
        email = row("event:1")
        assert (email.state, email.attempts) == ("queued", 1)
        assert email.last_error.startswith("Erreur inattendue à l'envoi : BadHeaderError")
        assert email.failure_cause == "internal"
        sweep_outbox()
        assert (row("event:1").state, row("event:1").attempts) == ("failed", 2)
    assert smtp_server.messages == []


def test_a_missing_row_is_not_an_error(smtp_app):
    with smtp_app.app_context():
        assert deliver_email(123456) == "missing"


# ---------------------------------------------------------------- sweep


def test_the_sweep_takes_rows_whose_hand_over_was_lost(app_ctx, db):
    now = utcnow()
    lost = OutboundEmail(key="lost", recipient="a@example.fr", subject="s", body_text="t", state="queued")
    lost.created_at = now - timedelta(minutes=2)
    fresh = OutboundEmail(key="fresh", recipient="a@example.fr", subject="s", body_text="t", state="queued")
    later = OutboundEmail(key="later", recipient="a@example.fr", subject="s", body_text="t", state="queued")
    later.created_at, later.next_attempt_at = now - timedelta(hours=1), now + timedelta(minutes=5)
    done = OutboundEmail(key="done", recipient="a@example.fr", subject="s", body_text="t", state="sent")
    done.created_at = now - timedelta(hours=1)
    db.session.add_all([lost, fresh, later, done])
    db.session.commit()
    assert due_email_ids(now=now) == [lost.id]
    # The retries that are due first, then the rows never attempted, oldest first.
    assert due_email_ids(now=now + timedelta(minutes=6)) == [later.id, lost.id, fresh.id]
    # A delivery batch does not wait for the hand-over's grace; the sweep does.
    assert due_email_ids(now=now, grace=False) == [lost.id, fresh.id]
    assert count_overdue(now=now) == 1
    assert count_overdue(now=now + timedelta(minutes=6)) == 3
    assert count_overdue(now=now + timedelta(minutes=6), cap=2) == 2


def test_flask_outbox_sweep_command(make_smtp_app, smtp_server):
    built = make_smtp_app(OUTBOX_SWEEP_GRACE_SECONDS=0)
    with built.app_context():
        _db.session.add(OutboundEmail(key="k", recipient="a@example.fr", subject="Objet", body_text="Texte"))
        _db.session.commit()  # added without queue_email: nothing handed over
    assert smtp_server.messages == []
    result = built.test_cli_runner().invoke(args=["outbox", "sweep"])
    assert result.exit_code == 0, result.output
    assert "1 courriel(s) remis en file d'envoi." in result.output
    assert [m["Subject"] for m in smtp_server.messages] == ["Objet"]


# ---------------------------------------------------------------- resend


def test_resending_a_failed_email_retries_the_same_row(smtp_app, smtp_server):
    smtp_server.refuse(550, at="RCPT")
    with smtp_app.app_context():
        email_id = cause("event:1")
        assert row("event:1").state == "failed"
        smtp_server.accept()
        with transaction():
            resent = resend_email(row("event:1"))
        assert resent.id == email_id
        email = row("event:1")
        assert (email.state, email.attempts, email.last_error) == ("sent", 1, None)
        assert len(_db.session.scalars(select(OutboundEmail)).all()) == 1
    assert len(smtp_server.messages) == 1


def test_resending_a_sent_email_writes_a_copy_with_its_own_message_id(smtp_app, smtp_server):
    with smtp_app.app_context():
        cause("event:1")
        with transaction():
            first = resend_email(row("event:1"))
        assert first.key == "event:1:renvoi:1"
        with transaction():
            second = resend_email(row("event:1:renvoi:1"))  # resending the copy counts from the original
        assert second.key == "event:1:renvoi:2"
        assert [e.state for e in _db.session.scalars(select(OutboundEmail).order_by(OutboundEmail.id))] == ["sent"] * 3
        expected = [message_id_for(k) for k in ("event:1", "event:1:renvoi:1", "event:1:renvoi:2")]
    assert [m["Message-ID"] for m in smtp_server.messages] == expected
    assert len(set(expected)) == 3
    assert {m["Subject"] for m in smtp_server.messages} == {"Bonjour Marie : message d'essai"}


def test_resending_a_queued_email_drops_its_backoff(make_smtp_app, smtp_server):
    smtp_server.refuse(451)
    with make_smtp_app(MAIL_RETRY_DELAYS=[3600]).app_context():
        cause("event:1")
        assert row("event:1").next_attempt_at is not None
        smtp_server.accept()
        with transaction():
            resend_email(row("event:1"))
        assert (row("event:1").state, row("event:1").attempts) == ("sent", 2)


# ---------------------------------------------------------------- jobs through Redis


class RoundTrips:
    """Counts the commands a Redis client sends to the server (a pipeline is one round trip)."""

    def __init__(self, monkeypatch) -> None:
        import redis.client

        self.count = 0
        plain, piped = redis.client.Redis.execute_command, redis.client.Pipeline.execute

        def execute_command(client, *args, **kwargs):
            if not isinstance(client, redis.client.Pipeline):
                self.count += 1
            return plain(client, *args, **kwargs)

        def execute(pipeline, *args, **kwargs):
            self.count += 1
            return piped(pipeline, *args, **kwargs)

        monkeypatch.setattr(redis.client.Redis, "execute_command", execute_command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)


def test_a_burst_is_handed_over_in_bounded_batches_in_one_round_trip(
    make_redis_app, smtp_server, run_worker, monkeypatch
):
    from tests.plugins.mail import smtp_settings

    built = make_redis_app(**smtp_settings(smtp_server), OUTBOX_BATCH_SIZE=50)
    with built.app_context():
        ids = [
            queue_email(f"digest:{n}", to=f"expert{n}@cci.example", template="test_message", context={"name": "E"}).id
            for n in range(120)
        ]
        trips = RoundTrips(monkeypatch)
        _db.session.commit()
        # 120 emails, one pipeline (and RQ asking the server's version, once per process): not
        # 120 calls inside the request.
        assert trips.count <= 2
        queue = built.extensions["rq"].get_queue("emails")
        jobs = queue.get_jobs()
        assert [len(job.args[0]) for job in jobs] == [50, 50, 20]
        assert sorted(i for job in jobs for i in job.args[0]) == sorted(ids)
        monkeypatch.undo()
        worker = run_worker(built)
        assert len(worker.succeeded) == 3 and worker.failed == []
        assert {row(f"digest:{n}").state for n in range(120)} == {"sent"}
    assert len(smtp_server.messages) == 120
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 120
    # One SMTP session per batch, not one per message.
    assert smtp_server.sessions == 3


def test_one_failure_does_not_fail_the_batch(smtp_app, smtp_server):
    from app.services.messaging.delivery import deliver_emails

    with smtp_app.app_context():
        _db.session.add_all(
            [
                OutboundEmail(key="a", recipient="a@example.fr", subject="A", body_text="a"),
                OutboundEmail(key="b", recipient="b@example.fr\nBcc: spam@example.fr", subject="B", body_text="b"),
                OutboundEmail(key="c", recipient="c@example.fr", subject="C", body_text="c"),
            ]
        )
        _db.session.commit()  # added without queue_email: nothing handed over
        outcomes = deliver_emails([row(k).id for k in "abc"])
        assert outcomes == {"sent": 2, "queued": 1}
        assert [(row(k).state, row(k).attempts) for k in "abc"] == [("sent", 1), ("queued", 1), ("sent", 1)]
    assert [m["Subject"] for m in smtp_server.messages] == ["A", "C"]


def test_a_relay_that_is_down_costs_one_attempt_not_one_per_row(make_smtp_app):
    from app.services.messaging.delivery import deliver_emails

    with make_smtp_app(MAIL_PORT=1).app_context():
        for key in "abc":
            _db.session.add(OutboundEmail(key=key, recipient=f"{key}@example.fr", subject=key, body_text=key))
        _db.session.commit()
        assert deliver_emails([row(k).id for k in "abc"]) == {"queued": 1, "postponed": 2}
        assert [(row(k).attempts, row(k).next_attempt_at is None) for k in "abc"] == [(1, False), (0, True), (0, True)]
        assert row("a").failure_cause == "relay"


def test_a_stranded_job_cannot_hold_a_row_back(make_redis_app, smtp_server, run_worker):
    """A worker killed while its job started leaves the job's hash ``queued`` in no queue, for
    ever. The row, not the job, decides: the sweep and « Renvoyer » still get it out."""
    from rq.job import Job, JobStatus

    from app.jobs import deliver_emails_job, sweep_outbox_job
    from tests.plugins.mail import smtp_settings

    built = make_redis_app(**smtp_settings(smtp_server), OUTBOX_SWEEP_GRACE_SECONDS=0)
    with built.app_context():
        queue = built.extensions["rq"].get_queue("emails")
        for key in ("lost", "resent"):
            _db.session.add(OutboundEmail(key=key, recipient=f"{key}@example.fr", subject=key, body_text=key))
        _db.session.commit()
        for key in ("lost", "resent"):
            stranded = Job.create(deliver_emails_job.func, args=([row(key).id],), connection=queue.connection)
            stranded.save()
            stranded.set_status(JobStatus.QUEUED)
            assert stranded.get_status() == JobStatus.QUEUED and stranded.id not in queue.job_ids

        with transaction():
            resend_email(row("resent"))
        sweep_outbox_job.enqueue()
        worker = run_worker(built)
        assert worker.failed == []
        assert (row("lost").state, row("resent").state) == ("sent", "sent")
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["lost", "resent"]


def test_the_sweep_does_not_pile_up_jobs(make_redis_app, smtp_server):
    from tests.plugins.mail import smtp_settings

    built = make_redis_app(**smtp_settings(smtp_server), OUTBOX_SWEEP_GRACE_SECONDS=0, OUTBOX_BATCH_SIZE=2)
    with built.app_context():
        queue = built.extensions["rq"].get_queue("emails")
        for n in range(5):
            _db.session.add(OutboundEmail(key=f"k{n}", recipient="a@example.fr", subject="s", body_text="t"))
        _db.session.commit()
        assert sweep_outbox() == 5
        assert queue.count == 3  # ceil(5 / 2) batches of whatever is due
        assert sweep_outbox() == 5  # a minute later, not delivered yet: the waiting jobs suffice
        assert queue.count == 3


def test_the_sweep_is_a_periodic_job_for_rq_cron(worker_app):
    with worker_app.app_context():
        scheduler = worker_app.extensions["rq"].make_cron_scheduler()
        try:
            jobs = [(job.func_name, job.queue_name, job.interval) for job in scheduler.get_jobs()]
        finally:
            scheduler.connection.close()
    assert ("app.jobs.sweep_outbox_job", "emails", 60) in jobs


def test_resend_command_takes_the_failures_of_one_cause(make_smtp_app, smtp_server):
    built = make_smtp_app()
    with built.app_context():
        _db.session.add_all(
            [
                OutboundEmail(
                    key="long",
                    recipient="a@example.fr",
                    subject="Long",
                    body_text="t",
                    state="failed",
                    attempts=1,
                    failure_cause="message",
                ),
                OutboundEmail(
                    key="refused",
                    recipient="b@example.fr",
                    subject="Refusé",
                    body_text="t",
                    state="failed",
                    failure_cause="recipient",
                ),
            ]
        )
        _db.session.commit()
    runner = built.test_cli_runner()
    result = runner.invoke(args=["outbox", "resend", "--cause", "message", "--dry-run"])
    assert (result.exit_code, result.output.strip()) == (0, "1 courriel(s) en échec seraient renvoyés.")
    assert smtp_server.messages == []
    result = runner.invoke(args=["outbox", "resend", "--cause", "message"])
    assert (result.exit_code, result.output.strip()) == (0, "1 courriel(s) remis en file d'envoi."), result.output
    assert [m["Subject"] for m in smtp_server.messages] == ["Long"]
    with built.app_context():
        assert (row("long").state, row("long").attempts, row("long").failure_cause) == ("sent", 1, None)
        assert row("refused").state == "failed"


def test_the_real_flask_rq_worker_command_delivers(worker_app, smtp_server):
    """``flask rq worker --burst`` as in the Procfile (emails run in the worker's own process)."""
    from tests.plugins.queue import ROOT, flask_command

    with worker_app.app_context():
        cause("event:1", to="paul@entreprise.example")
    argv, env = flask_command(worker_app, "rq", "worker", "--burst")
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert [m["To"] for m in smtp_server.messages] == ["paul@entreprise.example"]
    with worker_app.app_context():
        assert row("event:1").state == "sent"


@pytest.fixture(autouse=True)
def _templates(request):
    """Every test here may render the test email template in the session app."""
    if "app" in request.fixturenames or "app_ctx" in request.fixturenames:
        from tests.plugins.mail import add_test_templates

        add_test_templates(request.getfixturevalue("app"))


@pytest.mark.parametrize(
    "name",
    [
        "Recruter un ou plusieurs salariés pour la boulangerie de la rue",
        "Étaler des dettes fiscales ou sociales à l'échéance prévue « ouvrés » " * 3,
    ],
)
def test_long_accented_subjects_arrive_intact(smtp_app, smtp_server, name):
    """Folding a pre-encoded subject split words or doubled spaces: the subject must arrive as written."""
    with smtp_app.app_context():
        cause("event:accents", name=name.strip())
    [message] = smtp_server.messages
    assert message["Subject"] == f"Bonjour {name.strip()} : message d'essai"
