"""« Courriels »: the outbox in the back office (menu « Suivi »).

Staff see every email the service wrote, whether it left and why not; the only write is
« Renvoyer », through ``services.outbox.resend_email``. Rows are never created, edited or
deleted here: the outbox is the service's record of what it sent.
"""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual

from app.admin.base import ReadOnlyModelView
from app.admin.formatters import preformatted_formatter, preview_formatter
from app.extensions import db
from app.models import OutboundEmail
from app.models.outbox import EMAIL_STATE_LABELS, FAILURE_CAUSE_LABELS, EmailState
from app.services.messaging.outbox import LOGGED_ONLY, message_id_for, resend_email

STATE_CHOICES = list(EMAIL_STATE_LABELS.items())
CAUSE_CHOICES = [(cause.value, label) for cause, label in FAILURE_CAUSE_LABELS.items()]
ERROR_PREVIEW = 140


def _state_label(_view: Any, _context: Any, email: OutboundEmail, _name: str) -> str:
    if email.state == EmailState.SENT and email.last_error == LOGGED_ONLY:
        return "Journalisé, non envoyé"
    return EMAIL_STATE_LABELS.get(email.state, email.state)


def _cause_label(_view: Any, _context: Any, email: OutboundEmail, _name: str) -> str:
    return FAILURE_CAUSE_LABELS.get(email.failure_cause, email.failure_cause or "")


class OutboundEmailView(ReadOnlyModelView):
    details_template = "admin/outbox_details.html"

    column_list = ["created_at", "recipient", "subject", "state", "failure_cause", "attempts", "last_error", "sent_at"]
    column_details_list = [
        "key",
        "message_id",
        "recipient",
        "reply_to",
        "subject",
        "state",
        "failure_cause",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created_at",
        "body_text",
    ]
    column_export_list = [
        "created_at",
        "key",
        "recipient",
        "subject",
        "state",
        "failure_cause",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
    ]
    column_labels = {
        "created_at": "Écrit le",
        "key": "Clé d'événement",
        "message_id": "Message-ID",
        "recipient": "Destinataire",
        "reply_to": "Répondre à",
        "subject": "Objet",
        "state": "État",
        "failure_cause": "Cause de l'échec",
        "attempts": "Tentatives",
        "last_error": "Dernière erreur",
        "next_attempt_at": "Prochain essai",
        "sent_at": "Envoyé le",
        "body_text": "Texte",
    }
    column_formatters = {
        "state": _state_label,
        "failure_cause": _cause_label,
        "last_error": preview_formatter(ERROR_PREVIEW),
    }
    column_formatters_detail = {
        "state": _state_label,
        "failure_cause": _cause_label,
        # Derived from the event key, so a rare duplicate delivery carries the same Message-ID.
        "message_id": lambda _view, _context, email, _name: message_id_for(email.key),
        "body_text": preformatted_formatter,
    }
    column_formatters_export = {"state": _state_label, "failure_cause": _cause_label}
    column_sortable_list = ["created_at", "recipient", "subject", "state", "attempts", "sent_at"]
    column_searchable_list = ["recipient", "subject", "key"]
    column_filters = [
        FilterEqual(OutboundEmail.state, "État", options=STATE_CHOICES),
        FilterEqual(OutboundEmail.failure_cause, "Cause de l'échec", options=CAUSE_CHOICES),
    ]
    column_default_sort = [("created_at", True), ("id", True)]

    @action("renvoyer", "Renvoyer", "Renvoyer les courriels sélectionnés ?")
    def action_resend(self, ids: list[str]) -> None:
        self.run_action(ids, resend_email, "{count} courriel(s) remis en file d'envoi.")


def register(admin: Admin) -> None:
    admin.add_view(OutboundEmailView(OutboundEmail, db, name="Courriels", category="Suivi", endpoint="outbox"))
