"""``POST /inbound/email``: an email provider's webhook (or a relay) hands us a raw reply.

The body is the raw RFC 5322 message (any content type), or the ``message`` field of a
multipart form. The caller proves itself with the ``X-Inbound-Secret`` header; without
``INBOUND_EMAIL_SECRET`` the endpoint does not exist (404), so it is never open by mistake.
The answer is JSON, 200 for every message stored (posted or held: retrying would not change
the outcome), so the sender retries only on a real failure of ours.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, jsonify, request

from app.extensions import csrf
from app.services.audit import acting_as
from app.services.messaging.inbound import MAX_MESSAGE_BYTES, receive_email
from app.services.transactions import transaction

bp = Blueprint("inbound", __name__, url_prefix="/inbound")
# A server-to-server call with its own secret: there is no session, hence no CSRF token.
csrf.exempt(bp)


def _authorised() -> bool:
    secret = current_app.config.get("INBOUND_EMAIL_SECRET")
    if not secret:
        abort(404)
    given = request.headers.get("X-Inbound-Secret", "")
    return hmac.compare_digest(given.encode("utf-8", "replace"), str(secret).encode("utf-8"))


def _raw_message() -> bytes | None:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("message")
        if upload is not None:
            return upload.read(MAX_MESSAGE_BYTES + 1)
        field = request.form.get("message")
        return field.encode("utf-8", "surrogateescape") if field is not None else None
    return request.get_data(cache=False)


@bp.post("/email")
def receive():
    if not _authorised():
        return jsonify(error="Secret absent ou incorrect (en-tête X-Inbound-Secret)."), 403
    # Larger than the app-wide upload limit: a reply may carry big attachments we only list.
    request.max_content_length = MAX_MESSAGE_BYTES
    request.max_form_memory_size = MAX_MESSAGE_BYTES  # the ``message`` field of a form
    raw = _raw_message()
    if not raw:
        return jsonify(error="Aucun message : envoyez le courriel brut (RFC 5322) dans le corps."), 400
    with acting_as("courriel entrant"), transaction():
        message = receive_email(raw)
    return jsonify(state=message.state, reason=message.reason, id=message.id)


@bp.errorhandler(413)
def too_large(_error):
    return jsonify(error="Message trop volumineux."), 413
