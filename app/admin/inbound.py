"""« Réponses reçues »: the replies by email, in the back office (menu « Suivi »).

Staff see every reply received, posted as a comment or held with its reason (forged or
expired address, unknown sender…). Read-only: the only write is « Écarter », through
``services.inbound.discard_inbound``. A held reply is never published from here: its sender
could not be verified, and that is the whole point of holding it.
"""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual

from app.admin.base import ReadOnlyModelView
from app.admin.formatters import preformatted_formatter, preview_formatter
from app.extensions import db
from app.models import InboundMessage
from app.models.discussion import InboundState
from app.services.messaging.inbound import discard_inbound

STATE_LABELS = {InboundState.HELD: "Retenue", InboundState.POSTED: "Publiée", InboundState.DISCARDED: "Écartée"}
REASON_PREVIEW = 140


def _state_label(_view: Any, _context: Any, message: InboundMessage, _name: str) -> str:
    return STATE_LABELS.get(message.state, message.state)


def _attachments(_view: Any, _context: Any, message: InboundMessage, _name: str) -> str:
    return ", ".join(str(name) for name in (message.attachments or [])) or "aucune"


def _comment(_view: Any, _context: Any, message: InboundMessage, _name: str) -> str:
    return f"Commentaire #{message.comment_id}" if message.comment_id else ""


class InboundMessageView(ReadOnlyModelView):
    column_list = ["received_at", "sender", "subject", "state", "reason"]
    column_details_list = [
        "received_at",
        "sender",
        "recipient",
        "subject",
        "message_id",
        "state",
        "reason",
        "comment_id",
        "attachments",
        "text",
    ]
    column_export_list = ["received_at", "sender", "recipient", "subject", "state", "reason", "attachments"]
    column_labels = {
        "received_at": "Reçue le",
        "sender": "Expéditeur",
        "recipient": "Adresse de réponse",
        "subject": "Objet",
        "message_id": "Message-ID",
        "state": "État",
        "reason": "Raison",
        "comment_id": "Commentaire",
        "attachments": "Pièces jointes",
        "text": "Texte",
    }
    column_formatters = {"state": _state_label, "reason": preview_formatter(REASON_PREVIEW)}
    column_formatters_detail = {
        "state": _state_label,
        "text": preformatted_formatter,
        "attachments": _attachments,
        "comment_id": _comment,
    }
    column_formatters_export = {"state": _state_label, "attachments": _attachments}
    column_sortable_list = ["received_at", "sender", "subject", "state"]
    column_searchable_list = ["sender", "subject"]
    column_filters = [FilterEqual(InboundMessage.state, "État", options=list(STATE_LABELS.items()))]
    column_default_sort = [("received_at", True), ("id", True)]

    @action("ecarter", "Écarter", "Écarter les réponses sélectionnées ?")
    def action_discard(self, ids: list[str]) -> None:
        self.run_action(ids, discard_inbound, "{count} réponse(s) écartée(s).")


def register(admin: Admin) -> None:
    admin.add_view(
        InboundMessageView(InboundMessage, db, name="Réponses reçues", category="Suivi", endpoint="inbound_messages")
    )
