"""RQ job entry points: thin, take ids, call a service, safe to run twice (decision 3).

Queues are declared once in ``config`` (``RQ_QUEUES``); periodic jobs are registered here for
``flask rq cron``. Without Redis (``RQ_ASYNC=False``) Flask-RQ runs each job as it is enqueued,
in the same process: the same code path, inline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import click
from flask import Flask
from flask.cli import AppGroup
from redis.exceptions import RedisError
from rq import Queue

from app.extensions import rq

log = logging.getLogger(__name__)

# How often ``flask rq cron`` emails the finished bursts of comments (grouping: services.discussion).
COMMENTS_INTERVAL = 30
# How often ``flask rq cron`` deletes the exports past their seven days, in seconds.
PURGE_EXPORTS_INTERVAL = 3600
# An export of a few hundred thousand rows takes minutes; RQ's default (180 s) would kill it.
EXPORT_JOB_TIMEOUT = 3600


@rq.job(queue="emails")
def deliver_emails_job(email_ids: list[int]) -> dict[str, int]:
    """Deliver a batch of outbox rows over one SMTP connection; the service decides which are still due."""
    from app.services.messaging.outbox import deliver_emails

    return deliver_emails(email_ids)


@rq.job(queue="emails")
def deliver_due_emails_job() -> dict[str, int]:
    """Deliver one batch of whatever rows are due (what the sweep asks for)."""
    from app.services.messaging.outbox import deliver_due_emails

    return deliver_due_emails()


@rq.job(queue="emails")
def deliver_email_job(email_id: int) -> str:
    """One row: jobs of this name may still wait in Redis from the version before batches."""
    from app.services.messaging.outbox import deliver_email

    return deliver_email(email_id)


@rq.job(queue="emails")
def sweep_outbox_job() -> int:
    """Ask for the batches that take the rows left queued (Redis was down, a worker died) or due for a retry."""
    from app.services.messaging.outbox import sweep_outbox

    return sweep_outbox()


@rq.job(queue="emails")
def notify_comments_job() -> int:
    """Email the need's participants about the bursts of comments that are over."""
    from app.services.messaging.discussion import notify_pending_comments

    return notify_pending_comments()


@rq.job(queue="default")
def build_export_job(export_id: int) -> str:
    """Build one export's file; the service leaves a finished one alone."""
    from app.services.requests.exports import build_export

    return build_export(export_id)


@rq.job(queue="default")
def purge_exports_job() -> int:
    """Delete the exports past their expiry, files included."""
    from app.services.requests.exports import purge_exports

    return purge_exports()


def enqueue_export_build(export_id: int) -> bool:
    """Hand a committed export to its job (inline without Redis: built now); False when Redis
    is unreachable, for the service to record why the file will not come."""
    try:
        build_export_job.enqueue(export_id, job_id=f"export-{export_id}", job_timeout=EXPORT_JOB_TIMEOUT, result_ttl=0)
    except RedisError as error:
        log.warning("Redis injoignable (%s) : l'export %s n'a pas pu être lancé.", error, export_id)
        return False
    return True


def _enqueue_batches(job, batches: list[tuple]) -> None:
    """Enqueue ``job`` once per argument tuple, in one Redis round trip (inline: run each now)."""
    queue = rq.get_queue(job.queue)
    if not queue.is_async:
        for args in batches:
            job.enqueue(*args, result_ttl=0)
        return
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(
            [Queue.prepare_data(job.func, args=args, result_ttl=0) for args in batches],
            pipeline=pipe,
        )
        pipe.execute()


def enqueue_deliveries(email_ids: Iterable[int]) -> None:
    """Hand committed outbox rows to the delivery jobs, in batches of ``OUTBOX_BATCH_SIZE`` and
    one Redis round trip: a digest to 10,000 experts is 50 jobs, not 10,000 calls inside the web
    request. If Redis is unreachable the rows stay queued in the database and the periodic
    sweep takes them later.

    Called after the cause's commit: an error here must not turn a stored request into an
    error page, so Redis failures are logged, not raised.
    """
    from app.services.messaging.outbox import batches

    ids = list(email_ids)
    try:
        _enqueue_batches(deliver_emails_job, [(batch,) for batch in batches(ids)])
    except RedisError as error:
        log.warning(
            "Redis injoignable (%s) : %s courriel(s) restent en attente dans la boîte d'envoi, "
            "le balayage périodique les reprendra.",
            error,
            len(ids),
        )


def enqueue_due_deliveries(count: int) -> int:
    """Ask for ``count`` batches of due rows, minus the jobs already waiting in the emails queue
    (each of them takes due rows too). Returns how many were enqueued.

    Only the queue's length is read, never a job's status: a job stranded in Redis (its worker
    killed while it started) is in no queue and cannot hold anything back.
    """
    queue = rq.get_queue(deliver_due_emails_job.queue)
    try:
        missing = count - (queue.count if queue.is_async else 0)
        if missing > 0:
            _enqueue_batches(deliver_due_emails_job, [() for _ in range(missing)])
        return max(missing, 0)
    except RedisError as error:
        log.warning("Redis injoignable (%s) : le balayage de la boîte d'envoi reprendra au prochain passage.", error)
        return 0


outbox_cli = AppGroup("outbox", help="Boîte d'envoi des courriels.")


@outbox_cli.command("sweep")
def sweep_command() -> None:
    """Remet en file d'envoi les courriels en attente (après une panne de Redis ou du serveur SMTP)."""
    from app.services.messaging.outbox import sweep_outbox

    count = sweep_outbox()
    click.echo(f"{count} courriel(s) remis en file d'envoi.")


@outbox_cli.command("resend")
@click.option(
    "--cause",
    type=click.Choice(["recipient", "message", "relay", "internal"]),
    help="Seulement les échecs de cette cause (message : refusés pour un défaut du service).",
)
@click.option("--dry-run", is_flag=True, help="Compter sans rien renvoyer.")
def resend_command(cause: str | None, dry_run: bool) -> None:
    """Renvoie les courriels en échec définitif, par exemple après la correction d'un défaut du service."""
    from app.extensions import db
    from app.models.outbox import FailureCause
    from app.services.messaging.outbox import resend_failed

    count = resend_failed(cause=FailureCause(cause) if cause else None, dry_run=dry_run)
    if dry_run:
        click.echo(f"{count} courriel(s) en échec seraient renvoyés.")
        return
    db.session.commit()
    click.echo(f"{count} courriel(s) remis en file d'envoi.")


_cron_registered = False


def init_app(app: Flask) -> None:
    """Register the periodic jobs (once per process: the RQ extension is shared) and the CLI."""
    global _cron_registered
    if not _cron_registered:
        sweep_outbox_job.cron_register(app.config["OUTBOX_SWEEP_INTERVAL_SECONDS"])
        notify_comments_job.cron_register(COMMENTS_INTERVAL)
        purge_exports_job.cron_register(PURGE_EXPORTS_INTERVAL)
        _cron_registered = True
    app.cli.add_command(outbox_cli)
