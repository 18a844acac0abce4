"""Handing work to the jobs of ``app/jobs``, named by their dotted path.

Services decide *that* something must run later (an email to deliver, an export to build); the
jobs are an interface that runs it, and they import the services. Naming a job by its path
keeps the dependency pointing down: a service never imports ``app.jobs``. The names are listed
here once, and a test checks that each one is a job of ``app.jobs`` on the queue it names.

Without Redis (``RQ_ASYNC=False``), Flask-RQ's queues run a job the moment it is enqueued, in
the same process: the same path, inline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rq import Queue
from rq.job import Job

from app.extensions import rq


@dataclass(frozen=True)
class JobName:
    path: str
    queue: str


DELIVER_EMAILS = JobName("app.jobs.deliver_emails_job", "emails")
DELIVER_DUE_EMAILS = JobName("app.jobs.deliver_due_emails_job", "emails")
BUILD_EXPORT = JobName("app.jobs.build_export_job", "default")
JOBS = (DELIVER_EMAILS, DELIVER_DUE_EMAILS, BUILD_EXPORT)


def queue_of(job: JobName) -> Queue:
    return rq.get_queue(job.queue)


def runs_inline(job: JobName) -> bool:
    """True without Redis: an enqueued job has already run when ``enqueue`` returns."""
    return not queue_of(job).is_async


def waiting(job: JobName) -> int:
    """How many jobs wait in ``job``'s queue (0 inline). Only the queue's length is read, never
    a job's status."""
    queue = queue_of(job)
    return queue.count if queue.is_async else 0


def enqueue(job: JobName, *args: Any, **options: Any) -> Job:
    """Enqueue ``job(*args)``; ``options`` are RQ's (``job_id``, ``job_timeout``, ``result_ttl``…).
    Raises ``redis.exceptions.RedisError`` when Redis is unreachable: the caller decides."""
    return queue_of(job).enqueue(job.path, *args, **options)


def enqueue_many(job: JobName, arguments: Iterable[Sequence[Any]], **options: Any) -> int:
    """Enqueue ``job`` once per argument tuple, in one Redis round trip (inline: each runs now).
    Returns how many were enqueued; raises ``RedisError`` as :func:`enqueue` does."""
    queue = queue_of(job)
    batches = [tuple(args) for args in arguments]
    if not queue.is_async:
        for args in batches:
            queue.enqueue(job.path, *args, **options)
        return len(batches)
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many([Queue.prepare_data(job.path, args=args, **options) for args in batches], pipeline=pipe)
        pipe.execute()
    return len(batches)
