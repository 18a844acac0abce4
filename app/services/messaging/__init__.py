"""Emails and the experts' thread: the outbox and its delivery, notifications, replies by email, signed links."""
