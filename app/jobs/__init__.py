"""RQ job entry points: thin, take ids, call a service, safe to run twice (decision 3).

Queues are declared once in ``config`` (``RQ_QUEUES``); periodic jobs are registered here for
``flask rq cron``. Without Redis (``RQ_ASYNC=False``) Flask-RQ runs each job as it is enqueued,
in the same process: the same code path, inline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import suppress

import click
from flask import Flask
from flask.cli import AppGroup
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus

from app.extensions import rq

log = logging.getLogger(__name__)

# How often ``flask rq cron`` runs the outbox sweep, in seconds.
SWEEP_INTERVAL = 60
# How often ``flask rq cron`` emails the finished bursts of comments (grouping: services.discussion).
COMMENTS_INTERVAL = 30
# How often ``flask rq cron`` deletes the exports past their seven days, in seconds.
PURGE_EXPORTS_INTERVAL = 3600
# An export of a few hundred thousand rows takes minutes; RQ's default (180 s) would kill it.
EXPORT_JOB_TIMEOUT = 3600
# A job in one of these states will still run: enqueueing it again would only double it.
_PENDING_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


@rq.job(queue="emails")
def deliver_email_job(email_id: int) -> str:
    """Deliver one outbox row; the service decides whether it is still due."""
    from app.services.outbox import deliver_email

    return deliver_email(email_id)


@rq.job(queue="emails")
def sweep_outbox_job() -> int:
    """Hand over again the rows left queued (Redis was down, a worker died) or due for a retry."""
    from app.services.outbox import sweep_outbox

    return len(sweep_outbox())


@rq.job(queue="emails")
def notify_comments_job() -> int:
    """Email the need's participants about the bursts of comments that are over."""
    from app.services.discussion import notify_pending_comments

    return notify_pending_comments()


@rq.job(queue="default")
def build_export_job(export_id: int) -> str:
    """Build one export's file; the service leaves a finished one alone."""
    from app.services.exports import build_export

    return build_export(export_id)


@rq.job(queue="default")
def purge_exports_job() -> int:
    """Delete the exports past their expiry, files included."""
    from app.services.exports import purge_exports

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


def delivery_job_id(email_id: int) -> str:
    """One job id per outbox row: while a delivery job waits, it is not enqueued a second time."""
    return f"email-{email_id}"


def _enqueue_delivery(email_id: int) -> None:
    queue = rq.get_queue(deliver_email_job.queue)
    options = {"job_id": delivery_job_id(email_id), "result_ttl": 0}
    if not queue.is_async:
        # Inline: the job runs now, nothing can be waiting (and fakeredis has no Lua for ``unique``).
        deliver_email_job.enqueue(email_id, **options)
        return
    try:
        deliver_email_job.enqueue(email_id, unique=True, **options)
    except DuplicateJobError:
        job = Job.fetch(options["job_id"], connection=queue.connection) if queue.connection else None
        if job is not None and job.get_status(refresh=False) in _PENDING_STATUSES:
            return
        # A finished, failed or stopped job of an earlier attempt: replace it.
        if job is not None:
            job.delete()
        # Enqueued meanwhile by someone else: one job is what we want.
        with suppress(DuplicateJobError):
            deliver_email_job.enqueue(email_id, unique=True, **options)


def enqueue_deliveries(email_ids: Iterable[int]) -> None:
    """Hand committed outbox rows to the delivery job; if Redis is unreachable they stay
    queued in the database and the periodic sweep hands them over later.

    Called after the cause's commit: an error here must not turn a stored request into an
    error page, so Redis failures are logged, not raised.
    """
    ids = list(email_ids)
    for position, email_id in enumerate(ids):
        try:
            _enqueue_delivery(email_id)
        except RedisError as error:
            log.warning(
                "Redis injoignable (%s) : %s courriel(s) restent en attente dans la boîte d'envoi, "
                "le balayage périodique les reprendra.",
                error,
                len(ids) - position,
            )
            return


outbox_cli = AppGroup("outbox", help="Boîte d'envoi des courriels.")


@outbox_cli.command("sweep")
def sweep_command() -> None:
    """Remet en file d'envoi les courriels en attente (après une panne de Redis ou du serveur SMTP)."""
    from app.services.outbox import sweep_outbox

    ids = sweep_outbox()
    click.echo(f"{len(ids)} courriel(s) remis en file d'envoi.")


_cron_registered = False


def init_app(app: Flask) -> None:
    """Register the periodic jobs (once per process: the RQ extension is shared) and the CLI."""
    global _cron_registered
    if not _cron_registered:
        sweep_outbox_job.cron_register(SWEEP_INTERVAL)
        notify_comments_job.cron_register(COMMENTS_INTERVAL)
        purge_exports_job.cron_register(PURGE_EXPORTS_INTERVAL)
        _cron_registered = True
    app.cli.add_command(outbox_cli)
