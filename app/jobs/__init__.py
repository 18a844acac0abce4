"""RQ job entry points: thin, take ids, call a service, safe to run twice (decision 3).

Periodic jobs are registered here for ``flask rq cron``; the request flow adds its jobs later.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the periodic jobs (none yet: the outbox sweep arrives with the request flow)."""
