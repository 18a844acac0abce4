"""Signed, expiring links that let an expert act on one match without a password (contract §6).

The token carries the match and the expert it was issued to; it is refused when tampered
with, older than ``EXPERT_LINK_MAX_AGE_DAYS``, or revoked (match gone, expert deleted or no
longer the match's expert).
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.extensions import db
from app.models import Match
from app.services.errors import ServiceError

_SALT = "expert-link-v1"


class LinkError(ServiceError):
    """The link cannot open the need; the message says why, in French, without revealing it.

    ``title`` and ``http_status`` let every page answer the same way (404 for a link that never
    was or no longer is valid, 410 for one that has expired).
    """

    title = "Ce lien n'est plus actif"
    http_status = 404


class InvalidLink(LinkError):
    title = "Ce lien n'est pas valide"


class ExpiredLink(LinkError):
    title = "Ce lien a expiré"
    http_status = 410


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def expert_token(match: Match) -> str:
    return _serializer().dumps({"m": match.id, "e": match.expert_id})


def expert_url(match: Match) -> str:
    """The one link of an expert email that starts with ``{BASE_URL}/expert/``."""
    return f"{current_app.config['BASE_URL']}/expert/{expert_token(match)}"


def match_for_token(token: str) -> Match:
    max_age = int(current_app.config.get("EXPERT_LINK_MAX_AGE_DAYS", 90)) * 86400
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise ExpiredLink("Ce lien a expiré. Demandez un nouveau lien à l'équipe Place des Entreprises.") from None
    except BadSignature:
        raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.") from None
    match = db.session.get(Match, payload.get("m")) if isinstance(payload, dict) else None
    if match is None or match.expert_id != payload.get("e") or match.expert.deleted_at is not None:
        raise LinkError("Ce lien n'est plus actif : cette mise en relation ne vous est plus attribuée.")
    return match
