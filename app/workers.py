"""How ``flask rq worker`` and ``flask rq cron`` run (the Procfile's ``worker`` and ``cron``).

Flask-RQ 1.0 runs every job in a new ``flask rq work-horse`` process, which builds the whole
app again: about 1.5 s of CPU per job. That isolation is worth it for the long, memory-hungry
jobs (an export of 400,000 rows), not for the emails: short, idempotent, and frequent. The
worker here runs the jobs of ``RQ_IN_PROCESS_QUEUES`` (``emails``) in its own process, in the
app context the command already holds, and leaves every other queue to Flask-RQ's work-horse.
A job killed with its worker loses nothing: the outbox rows, not the jobs, say what is due.

RQ 3.0's cron scheduler exits on the first Redis error (a ``ConnectionError`` traceback about
15 s into an outage), after which nothing sweeps the outbox until someone restarts it. The
scheduler here waits for Redis to come back, however long it takes, and goes on.

This module imports no other module of the app, so ``app.extensions`` can use it.
"""

from __future__ import annotations

import logging
import time
from pkgutil import resolve_name

from flask_rq import RQ as _FlaskRQ
from flask_rq._worker import FlaskSubprocessWorker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import cron
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

log = logging.getLogger(__name__)

# What an unreachable Redis raises, on connect or mid-command.
REDIS_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)
# The cron scheduler's waits while Redis is away: 1 s, doubling up to this.
OUTAGE_MAX_WAIT_SECONDS = 30
# The cron scheduler's commands are short; a Redis that stops answering mid-command must not
# hang it (the worker's blocking reads keep the default: they wait on purpose).
CRON_SOCKET_TIMEOUT_SECONDS = 30


class Worker(FlaskSubprocessWorker):
    """Runs the jobs of ``in_process_queues`` in this process; the others in Flask-RQ's
    work-horse subprocess."""

    in_process_queues: frozenset[str] = frozenset()

    def execute_job(self, job: Job, queue: Queue) -> None:
        if queue.name not in self.in_process_queues:
            super().execute_job(job, queue)
            return
        # What RQ's SimpleWorker does: the job runs here, under RQ's own timeout (SIGALRM).
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # No monitoring loop refreshes the heartbeat while a job runs in process: cover the
        # whole job, as RQ's SimpleWorker does.
        if job.origin in self.in_process_queues:
            return int(job.timeout or self.queue_class.DEFAULT_TIMEOUT) + 60
        return super().get_heartbeat_ttl(job, working_time)


class CronScheduler(cron.CronScheduler):
    """RQ's cron scheduler, riding out Redis outages of any length.

    A job that could not be enqueued keeps its due time and is enqueued once Redis answers
    (each periodic job runs once after the outage, not once per missed interval).
    """

    def start(self) -> None:
        self.log.info("CronScheduler %s: starting...", self.name)
        self._install_signal_handlers()
        outage_since: float | None = None
        wait = 1.0
        born = False
        try:
            while True:
                try:
                    if not born:
                        self.register_birth()
                        born = True
                    if self.enqueue_jobs():
                        self.save()
                    self.heartbeat()
                except REDIS_OUTAGE as error:
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.error("Redis injoignable (%s) : les tâches périodiques attendent son retour.", error)
                    time.sleep(wait)
                    wait = min(wait * 2, OUTAGE_MAX_WAIT_SECONDS)
                    continue
                if outage_since is not None:
                    log.warning(
                        "Redis de nouveau joignable après %.0f s : les tâches périodiques reprennent.",
                        time.monotonic() - outage_since,
                    )
                    outage_since, wait = None, 1.0
                sleep_time = self.calculate_sleep_interval()
                if sleep_time > 0:
                    time.sleep(sleep_time)
        except KeyboardInterrupt:
            self.log.info("CronScheduler %s: received KeyboardInterrupt", self.name)
        except StopRequested:
            self.log.info("CronScheduler %s: stop requested", self.name)
        finally:
            try:
                self.register_death()
            except REDIS_OUTAGE:
                self.log.info("CronScheduler %s: Redis away, its entry will expire by itself", self.name)
            self.log.info("CronScheduler %s: shutdown complete", self.name)


class RQ(_FlaskRQ):
    """Flask-RQ with the worker and the cron scheduler above (same commands, same config)."""

    def make_worker(self, queues: list[str] | tuple[str, ...] | None = None, **kwargs) -> Worker:
        app = self._get_current_app()
        known = self.queues
        chosen = tuple(known.values()) if not queues else tuple(known[name] for name in queues)
        worker = Worker(chosen, job_class=chosen[0].job_class, **kwargs)
        worker.in_process_queues = frozenset(app.config.get("RQ_IN_PROCESS_QUEUES", ()))
        return worker

    def make_cron_scheduler(self) -> CronScheduler:
        app = self._get_current_app()
        connection_class = app.config.get("RQ_CONNECTION_CLASS") or "redis.Redis"
        if isinstance(connection_class, str):
            connection_class = resolve_name(connection_class)
        settings = app.config.get("RQ_CONNECTION", {})
        if isinstance(settings, str):
            connection = connection_class.from_url(settings, socket_timeout=CRON_SOCKET_TIMEOUT_SECONDS)
        else:
            connection = connection_class(**settings)
        scheduler = CronScheduler(connection=connection, name=app.name)
        for item in self._cron_job_data:
            scheduler.register(**item)
        return scheduler
