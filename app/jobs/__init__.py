"""RQ job entry points: thin, take ids, call a service, safe to run twice (decision 3).

Queues are declared once in ``config`` (``RQ_QUEUES``); periodic jobs are registered here for
``flask rq cron``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Flask

log = logging.getLogger(__name__)


def enqueue_deliveries(email_ids: Iterable[int]) -> None:
    """Hand committed outbox rows to the delivery job; if Redis is unreachable they stay
    queued in the database and the periodic sweep hands them over later."""
    # Being written (issue 3): the email delivery job.
    log.info("emails en attente d'envoi : %s", list(email_ids))


def init_app(app: Flask) -> None:
    """Register the periodic jobs."""
