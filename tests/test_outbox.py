"""The outbox: written with its cause, delivered by a job through a real SMTP server, retried
with backoff, swept, resent; the jobs through a real Redis and real RQ workers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import OutboundEmail
from app.models.base import utcnow
from app.services.outbox import (
    LOGGED_ONLY,
    deliver_email,
    due_email_ids,
    message_id_for,
    queue_email,
    resend_email,
    retry_delay,
    sweep_outbox,
)

ROOT = Path(__file__).resolve().parent.parent


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
    caplog.set_level(logging.INFO, logger="app.services.outbox")
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
        assert sweep_outbox() == []
        # A minute later the sweep hands it over and it leaves.
        assert due_email_ids(now=utcnow() + timedelta(seconds=61)) == [email_id]
        email.next_attempt_at = utcnow() - timedelta(seconds=1)  # the minute has passed
        _db.session.commit()
        assert sweep_outbox() == [email_id]
        email = row("event:1")
        assert (email.state, email.attempts, email.last_error, email.next_attempt_at) == ("sent", 2, None, None)
    assert len(smtp_server.messages) == 1


def test_after_the_last_attempt_the_email_has_failed(make_smtp_app, smtp_server):
    smtp_server.refuse(421, "Trop de connexions")
    with make_smtp_app(MAIL_MAX_ATTEMPTS=3).app_context():
        email_id = cause("event:1")
        assert sweep_outbox() == [email_id]
        assert row("event:1").attempts == 2
        assert sweep_outbox() == [email_id]
        email = row("event:1")
        assert (email.state, email.attempts, email.next_attempt_at) == ("failed", 3, None)
        assert "421 Trop de connexions" in email.last_error
        assert sweep_outbox() == []
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


def test_an_unreachable_smtp_server_is_retried(make_smtp_app):
    with make_smtp_app(MAIL_PORT=1).app_context():
        cause("event:1")
        email = row("event:1")
        assert (email.state, email.attempts) == ("queued", 1)
        assert email.last_error.startswith("Serveur SMTP injoignable")
        assert email.next_attempt_at is not None


def test_a_message_that_cannot_be_built_ends_as_failed_not_retried_forever(make_smtp_app, smtp_server):
    with make_smtp_app(MAIL_MAX_ATTEMPTS=2).app_context():
        cause("event:1", to="victime@example.fr\nBcc: spam@example.fr")  # a header injection
        email = row("event:1")
        assert (email.state, email.attempts) == ("queued", 1)
        assert email.last_error.startswith("Erreur inattendue à l'envoi : BadHeaderError")
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
    assert due_email_ids(now=now + timedelta(minutes=6)) == sorted([lost.id, fresh.id, later.id])


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
        resent = resend_email(row("event:1"))
        assert resent.id == email_id
        email = row("event:1")
        assert (email.state, email.attempts, email.last_error) == ("sent", 1, None)
        assert len(_db.session.scalars(select(OutboundEmail)).all()) == 1
    assert len(smtp_server.messages) == 1


def test_resending_a_sent_email_writes_a_copy_with_its_own_message_id(smtp_app, smtp_server):
    with smtp_app.app_context():
        cause("event:1")
        first = resend_email(row("event:1"))
        assert first.key == "event:1:renvoi:1"
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
        resend_email(row("event:1"))
        assert (row("event:1").state, row("event:1").attempts) == ("sent", 2)


# ---------------------------------------------------------------- jobs through Redis


def test_one_job_per_email_at_a_time(worker_app, smtp_server, run_worker):
    from app.jobs import delivery_job_id, enqueue_deliveries

    with worker_app.app_context():
        email_id = cause("event:1")
        queue = worker_app.extensions["rq"].get_queue("emails")
        assert queue.job_ids == [delivery_job_id(email_id)] == [f"email-{email_id}"]
        enqueue_deliveries([email_id])  # the sweep, while the job still waits
        assert queue.count == 1
        worker = run_worker(worker_app)
        assert (worker.succeeded, worker.failed) == ([f"email-{email_id}"], [])
        # Its job is finished: handing the row over again is possible, and harmless.
        enqueue_deliveries([email_id])
        assert queue.count == 1
        run_worker(worker_app)
        assert row("event:1").state == "sent"
    assert len(smtp_server.messages) == 1


def test_a_failed_job_of_an_earlier_attempt_is_replaced(worker_app, smtp_server, run_worker):
    """A worker died mid-job (RQ marked it failed): the sweep's hand-over must not be refused."""
    from rq.job import Job, JobStatus

    from app.jobs import deliver_email_job, delivery_job_id, enqueue_deliveries

    with worker_app.app_context():
        queue = worker_app.extensions["rq"].get_queue("emails")
        _db.session.add(OutboundEmail(key="event:1", recipient="a@example.fr", subject="Objet", body_text="Texte"))
        _db.session.commit()  # added without queue_email: no job yet
        email_id = row("event:1").id
        dead = Job.create(
            deliver_email_job.func, args=(email_id,), id=delivery_job_id(email_id), connection=queue.connection
        )
        dead.save()
        dead.set_status(JobStatus.FAILED)
        enqueue_deliveries([email_id])
        assert queue.job_ids == [delivery_job_id(email_id)]
        run_worker(worker_app)
        assert row("event:1").state == "sent"
    assert len(smtp_server.messages) == 1


def test_the_sweep_is_a_periodic_job_for_rq_cron(worker_app):
    with worker_app.app_context():
        scheduler = worker_app.extensions["rq"].make_cron_scheduler()
        try:
            jobs = [(job.func_name, job.queue_name, job.interval) for job in scheduler.get_jobs()]
        finally:
            scheduler.connection.close()
    assert ("app.jobs.sweep_outbox_job", "emails", 60) in jobs


def test_the_real_flask_rq_worker_command_delivers(worker_app, smtp_server, redis_url):
    """``flask rq worker --burst`` as in the Procfile: Flask-RQ's subprocess work-horse included."""
    with worker_app.app_context():
        cause("event:1", to="paul@entreprise.example")
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": worker_app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "MAIL_SERVER": smtp_server.host,
        "MAIL_PORT": str(smtp_server.port),
    }
    flask = [sys.executable, str(ROOT / ".venv" / "bin" / "flask")]
    if not Path(flask[1]).exists():
        flask = [sys.executable, "-m", "flask"]
    result = subprocess.run(
        [*flask, "--app", "app", "rq", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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
