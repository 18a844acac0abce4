"""A real SMTP server for the tests (aiosmtpd), and apps that deliver to it.

Fixtures:

- ``smtp_server``: an :class:`SMTPServer` listening on 127.0.0.1 (a free port) for one test;
  ``smtp_server.messages`` lists what it accepted, parsed as ``email.message.EmailMessage``;
  ``smtp_server.refuse(451)`` makes it answer DATA with an error (``refuse(550, at="RCPT")``
  refuses the recipient instead), ``smtp_server.accept()`` heals it; ``smtp_server.sessions``
  counts the SMTP sessions opened (EHLO), ``smtp_server.hold(after=n)`` keeps every DATA after the next ``n``
  waiting (``waiting`` counts those waiting now) until ``release()``. It enforces SMTP's limits as a real
  relay does (a line over 1,000 characters: « 500 Line too long »).
- ``smtp_app``: an app on the test database whose emails go to ``smtp_server`` (jobs inline,
  as without Redis); ``make_smtp_app(**overrides)`` builds one with more settings. With Redis,
  use ``worker_app`` from ``tests.plugins.queue``.
- ``email_templates``: adds ``tests/templates`` to the session app's templates, so
  ``queue_email(..., template="test_message", context={"name": …})`` works in any test.

``smtp_settings(server)`` gives the settings to pass to ``make_app`` for a custom app, and
``add_test_templates(app)`` the test templates to any app.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from jinja2 import ChoiceLoader, FileSystemLoader

TEST_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def add_test_templates(flask_app) -> None:
    """Let ``flask_app`` render ``tests/templates/emails/test_*`` (idempotent)."""
    loader = flask_app.jinja_env.loader
    if getattr(loader, "_pde_test_templates", False):
        return
    combined = ChoiceLoader([loader, FileSystemLoader(str(TEST_TEMPLATES))])
    combined._pde_test_templates = True
    flask_app.jinja_env.loader = combined


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(self, _server, _session, envelope, address, _rcpt_options):
        refusal = self.server.refusal
        if refusal and refusal[0] == "RCPT":
            return refusal[1]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_EHLO(self, _server, session, _envelope, hostname, responses):
        session.host_name = hostname
        with self.server.lock:
            self.server.sessions += 1
        return responses

    async def handle_DATA(self, _server, _session, envelope):
        if self.server.holding.is_set() and len(self.server.messages) >= self.server.hold_from:
            with self.server.lock:
                self.server.waiting += 1
            try:
                while self.server.holding.is_set():
                    await asyncio.sleep(0.02)
            finally:  # released, or cancelled because the client hung up
                with self.server.lock:
                    self.server.waiting -= 1
        refusal = self.server.refusal
        if refusal and refusal[0] == "DATA":
            self.server.refused += 1
            return refusal[1]
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(parsed)
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SMTPServer:
    """An SMTP server in a thread of the test process, with a switch to refuse mail.

    Delivery through ``smtplib`` is synchronous: when ``sendmail`` returns, the message is in
    ``messages`` already, so tests never wait.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refusal: tuple[str, str] | None = None
        self.refused = 0
        self.sessions = 0
        self.waiting = 0
        self.holding = threading.Event()
        self.hold_from = 0
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self.release()
        self._controller.stop()
        self._controller.loop.close()

    def refuse(self, code: int = 451, message: str | None = None, *, at: str = "DATA") -> None:
        """Answer every following DATA (or RCPT) with ``code``: 4xx is temporary, 5xx final."""
        text = message or ("Service temporairement indisponible" if code < 500 else "Message refusé")
        self.refusal = (at, f"{code} {text}")

    def accept(self) -> None:
        self.refusal = None

    def hold(self, after: int = 0) -> None:
        """Accept ``after`` more messages, then keep every following one waiting at DATA (on
        the wire: sent by the client, not yet answered)."""
        self.hold_from = len(self.messages) + after
        self.holding.set()

    def release(self) -> None:
        self.holding.clear()

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()

    def to(self, address: str) -> list[EmailMessage]:
        """The messages accepted for ``address``."""
        return [message for message in self.messages if address in message["To"]]

    @property
    def settings(self) -> dict:
        return smtp_settings(self)


def smtp_settings(server: SMTPServer) -> dict:
    """App settings delivering to ``server`` for real (the testing config suppresses sending)."""
    return {
        "MAIL_SERVER": server.host,
        "MAIL_PORT": server.port,
        "MAIL_USE_TLS": False,
        "MAIL_USE_SSL": False,
        "MAIL_USERNAME": None,
        "MAIL_PASSWORD": None,
        "MAIL_SUPPRESS_SEND": False,
        # Tests retry at once instead of waiting for the backoff.
        "MAIL_RETRY_DELAYS": [0],
    }


@pytest.fixture
def smtp_server():
    server = SMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_smtp_app(make_app, smtp_server):
    """Build an app delivering to ``smtp_server`` (jobs inline, test templates on) with more settings."""

    def build(**overrides):
        built = make_app(**{**smtp_settings(smtp_server), **overrides})
        add_test_templates(built)
        return built

    return build


@pytest.fixture
def smtp_app(make_smtp_app):
    """An app delivering to ``smtp_server``, jobs inline (``RQ_ASYNC=False``), test templates on."""
    return make_smtp_app()


@pytest.fixture
def email_templates(app):
    add_test_templates(app)
    return app
