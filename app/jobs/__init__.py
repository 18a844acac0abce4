"""RQ job entry points: thin, take ids, call a service, safe to run twice.

Queues are declared once in ``config`` (``RQ_QUEUES``); periodic jobs are registered here for
``flask rq cron``. Services hand work to these jobs by their dotted path
(``app/services/queueing.py``), never by importing this module. Without Redis
(``RQ_ASYNC=False``) Flask-RQ runs each job as it is enqueued, in the same process: the same
code path, inline.
"""

from __future__ import annotations

from flask import Flask

from app.admin.export_builder import build_export
from app.dates import in_paris, utcnow
from app.extensions import rq
from app.services.messaging import delivery, discussion, outbox
from app.services.requests import exports, followup
from app.services.statistics import aggregates, reports
from app.services.transactions import transaction

# How often ``flask rq cron`` emails the finished bursts of comments (the grouping is the
# discussion service's).
COMMENTS_INTERVAL = 30
# How often ``flask rq cron`` deletes the exports past their seven days, in seconds.
PURGE_EXPORTS_INTERVAL = 3600


@rq.job(queue="emails")
def deliver_emails_job(email_ids: list[int]) -> dict[str, int]:
    """Deliver a batch of outbox rows over one SMTP connection; the service decides which are still due."""
    return delivery.deliver_emails(email_ids)


@rq.job(queue="emails")
def deliver_due_emails_job() -> dict[str, int]:
    """Deliver one batch of whatever rows are due (what the sweep asks for)."""
    return delivery.deliver_due_emails()


@rq.job(queue="emails")
def deliver_email_job(email_id: int) -> str:
    """One row: jobs of this name may still wait in Redis from the version before batches."""
    return delivery.deliver_email(email_id)


@rq.job(queue="emails")
def sweep_outbox_job() -> int:
    """Ask for the batches that take the rows left queued (Redis was down, a worker died) or due for a retry."""
    return outbox.sweep_outbox()


@rq.job(queue="emails")
def notify_comments_job() -> int:
    """Email the need's participants about the bursts of comments that are over."""
    return discussion.notify_pending_comments()


@rq.job(queue="default")
def build_export_job(export_id: int) -> str:
    """Build one export's file; a finished one is left alone."""
    return build_export(export_id)


@rq.job(queue="default")
def purge_exports_job() -> int:
    """Delete the exports past their expiry, files included."""
    with transaction():
        return exports.purge_exports()


@rq.job(queue="default")
def followup_job() -> int:
    """Every follow-up step due now; the event keys make a second run send nothing."""
    with transaction():
        return len(followup.run_followup())


@rq.job(queue="default")
def refresh_statistics_job() -> int:
    """Recompute the public statistics' aggregates (``/stats`` reads nothing else)."""
    with transaction():
        return aggregates.refresh().cells


@rq.job(queue="default")
def quarterly_reports_job() -> int:
    """The partners' reports of the quarter just ended (a rebuild replaces them, emails once)."""
    with transaction():
        return len(reports.build_reports(reports.previous_quarter(in_paris(utcnow()).date())).built)


@rq.job(queue="default")
def monthly_reports_job() -> int:
    """The partners' files of the month just ended."""
    with transaction():
        return len(reports.build_reports(reports.previous_month(in_paris(utcnow()).date())).built)


# Each morning at 06:10 UTC (07:10 or 08:10 in Paris), before the working day.
FOLLOWUP_CRON = "10 6 * * *"
# Each night at 02:40 UTC, when the service is quiet: yesterday's figures for the morning.
STATISTICS_CRON = "40 2 * * *"
# The first day of each quarter at 04:00 UTC: the quarter just ended, before the working day.
REPORTS_CRON = "0 4 1 1,4,7,10 *"
# The first day of each month at 04:30 UTC: the month just ended.
MONTHLY_REPORTS_CRON = "30 4 1 * *"

_cron_registered = False


def init_app(app: Flask) -> None:
    """Register the periodic jobs (once per process: the RQ extension is shared)."""
    global _cron_registered
    if not _cron_registered:
        sweep_outbox_job.cron_register(app.config["OUTBOX_SWEEP_INTERVAL_SECONDS"])
        notify_comments_job.cron_register(COMMENTS_INTERVAL)
        purge_exports_job.cron_register(PURGE_EXPORTS_INTERVAL)
        followup_job.cron_register(FOLLOWUP_CRON)
        refresh_statistics_job.cron_register(STATISTICS_CRON)
        quarterly_reports_job.cron_register(REPORTS_CRON)
        monthly_reports_job.cron_register(MONTHLY_REPORTS_CRON)
        _cron_registered = True
