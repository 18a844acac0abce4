"""Faults: with a real Redis, a real RQ worker, a real SMTP server and the test
database, no email is lost when Redis or SMTP is down, and none is sent twice."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.orm import Session

from app.extensions import db as _db
from app.models import Institution, OutboundEmail
from app.services.messaging.delivery import deliver_email
from app.services.messaging.outbox import message_id_for, queue_email, sweep_outbox
from tests.plugins.mail import smtp_settings
from tests.plugins.queue import redis_settings

# A port nothing listens on: Redis "stopped".
REDIS_DOWN_URL = "redis://127.0.0.1:1/14"


def cause(key: str, to: str, name: str = "Marie") -> int:
    email = queue_email(key, to=to, template="test_message", context={"name": name})
    return email.id


def states() -> dict[str, tuple[str, int]]:
    _db.session.expire_all()
    return {e.key: (e.state, e.attempts) for e in _db.session.scalars(select(OutboundEmail))}


def test_redis_down_then_back_every_email_is_delivered_once(make_redis_app, smtp_server, run_worker, redis_url, caplog):
    # Redis stopped while requests arrive: the causes commit, their emails wait in the outbox.
    down = make_redis_app(**{**redis_settings(REDIS_DOWN_URL), **smtp_settings(smtp_server)})
    with down.app_context():
        for n in range(3):
            _db.session.add(Institution(name=f"Demande {n}", slug=f"demande-{n}"))
            cause(f"request:{n}:confirmation", to=f"dirigeant{n}@entreprise.example")
            _db.session.commit()  # no exception: the request is stored and confirmed
        assert len(_db.session.scalars(select(Institution)).all()) == 3
        assert states() == {f"request:{n}:confirmation": ("queued", 0) for n in range(3)}
    assert "Redis injoignable" in caplog.text
    assert smtp_server.messages == []

    # Redis is back: the periodic sweep (as `flask rq cron` enqueues it) hands them over.
    back = make_redis_app(**smtp_settings(smtp_server), OUTBOX_SWEEP_GRACE_SECONDS=0)
    with back.app_context():
        from app.jobs import sweep_outbox_job

        sweep_outbox_job.enqueue()
        worker = run_worker(back)
        assert len(worker.succeeded) == 2 and worker.failed == []  # the sweep, then one batch of three
        assert states() == {f"request:{n}:confirmation": ("sent", 1) for n in range(3)}
        # Sweeping again finds nothing to do.
        sweep_outbox_job.enqueue()
        run_worker(back)
    assert sorted(m["To"] for m in smtp_server.messages) == [f"dirigeant{n}@entreprise.example" for n in range(3)]


def test_smtp_refusing_then_accepting_delivers_once(worker_app, smtp_server, run_worker, caplog):
    caplog.set_level(logging.WARNING)
    smtp_server.refuse(451, "Greylisting, réessayez plus tard")
    with worker_app.app_context():
        email_id = cause("match:1:new", to="expert@cci.example")
        _db.session.commit()
        run_worker(worker_app)
        email = _db.session.get(OutboundEmail, email_id)
        assert (email.state, email.attempts) == ("queued", 1)
        assert "451" in email.last_error and "Greylisting" in email.last_error
        assert email.next_attempt_at is not None
        assert smtp_server.messages == []

        smtp_server.accept()
        assert sweep_outbox() == 1  # MAIL_RETRY_DELAYS=[0] in tests: due at once
        run_worker(worker_app)
        assert states() == {"match:1:new": ("sent", 2)}
        assert sweep_outbox() == 0
        run_worker(worker_app)
    assert [m["To"] for m in smtp_server.messages] == ["expert@cci.example"]
    assert smtp_server.refused == 1


def test_the_same_delivery_job_run_twice_sends_one_email(worker_app, smtp_server, run_worker):
    from app.jobs import deliver_due_emails_job, deliver_email_job, deliver_emails_job

    with worker_app.app_context():
        email_id = cause("match:2:new", to="expert@bpi.example")
        _db.session.commit()
        # The same batch enqueued again (a retried or re-enqueued job), a sweep's batch, and a
        # job of the version before batches.
        deliver_emails_job.enqueue([email_id], job_id="replayed-delivery")
        deliver_due_emails_job.enqueue(job_id="swept-delivery")
        deliver_email_job.enqueue(email_id, job_id="older-delivery")
        worker = run_worker(worker_app)
        assert len(worker.succeeded) == 4 and worker.failed == []
        # And run once more, by hand.
        assert deliver_emails_job([email_id]) == {"skipped": 1}
        assert states() == {"match:2:new": ("sent", 1)}
    assert len(smtp_server.messages) == 1


def test_a_row_being_delivered_elsewhere_is_skipped(worker_app, smtp_server):
    """Two workers on one row: the second finds it locked (PostgreSQL ``SKIP LOCKED``) and leaves it."""
    url = worker_app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("row locks need PostgreSQL (the suite runs on it in CI)")
    with worker_app.app_context():
        # Should the claim ever block instead of skipping, fail rather than wait forever.
        event.listen(_db.engine, "checkout", _short_lock_timeout)
        _db.engine.dispose()
        smtp_server.refuse(451)  # the commit-time delivery fails, the row stays queued and due
        email_id = cause("match:3:new", to="expert@urssaf.example")
        _db.session.commit()
        smtp_server.accept()
        engine = create_engine(url)
        try:
            with Session(engine) as other_worker:
                other_worker.execute(text("SELECT id FROM outbound_emails WHERE id = :id FOR UPDATE"), {"id": email_id})
                assert deliver_email(email_id) == "queued"  # skipped at once, not blocked
                other_worker.rollback()
            assert deliver_email(email_id) == "sent"
        finally:
            engine.dispose()
    assert len(smtp_server.messages) == 1


def _short_lock_timeout(dbapi_connection, _record, _proxy) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")
    dbapi_connection.commit()  # a session setting; leave no transaction open on checkout


def test_the_message_id_derives_from_the_event_key(worker_app, smtp_server, run_worker):
    with worker_app.app_context():
        cause("solicitation:7:confirmation", to="dirigeante@entreprise.example")
        _db.session.commit()
        run_worker(worker_app)
        expected = message_id_for("solicitation:7:confirmation")
    [message] = smtp_server.messages
    assert message.get_all("Message-ID") == [expected]
    assert expected.startswith("<") and expected.endswith("@127.0.0.1>")


def test_without_redis_the_email_is_delivered_at_commit(smtp_app, smtp_server):
    with smtp_app.app_context():
        assert not smtp_app.extensions["rq"].get_queue("emails").is_async
        cause("solicitation:8:confirmation", to="gerant@entreprise.example")
        assert smtp_server.messages == []  # not before the commit
        _db.session.commit()
        assert [m["To"] for m in smtp_server.messages] == ["gerant@entreprise.example"]
        assert states() == {"solicitation:8:confirmation": ("sent", 1)}
