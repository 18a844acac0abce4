"""Errors a service raises for people to read: the message is French and safe to show."""

from __future__ import annotations


class ServiceError(Exception):
    """A rule refused the operation; ``str(error)`` is the French explanation."""


class NotFound(ServiceError):
    pass
