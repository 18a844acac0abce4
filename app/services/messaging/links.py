"""Signed, expiring links that let an expert act on one match without a password: the token is the
credential, so it is signed, expires, and dies with the match.

The token carries the match and the expert it was issued to; it is refused when tampered
with, older than ``EXPERT_LINK_MAX_AGE_DAYS``, or revoked (match gone, expert deleted or no
longer the match's expert). The inbox link works the same way for all of one expert's matches,
under its own salt so that neither kind of token opens the other's page.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.extensions import db
from app.models import Expert, Match
from app.services.errors import ServiceError

_SALT = "expert-link-v1"
# Its own salt: a match token must never open an inbox, nor the reverse.
_INBOX_SALT = "expert-inbox-v1"


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


def _serializer(salt: str = _SALT) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _max_age() -> int:
    return int(current_app.config.get("EXPERT_LINK_MAX_AGE_DAYS", 90)) * 86400


def expert_token(match: Match) -> str:
    return _serializer().dumps({"m": match.id, "e": match.expert_id})


def expert_url(match: Match) -> str:
    """The one link of an expert email that starts with ``{BASE_URL}/expert/``."""
    return f"{current_app.config['BASE_URL']}/expert/{expert_token(match)}"


def _load(token: str, salt: str):
    try:
        return _serializer(salt).loads(token, max_age=_max_age())
    except SignatureExpired:
        raise ExpiredLink("Ce lien a expiré. Demandez un nouveau lien à l'équipe Place des Entreprises.") from None
    except BadSignature:
        raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.") from None


def match_for_token(token: str) -> Match:
    payload = _load(token, _SALT)
    match = db.session.get(Match, payload.get("m")) if isinstance(payload, dict) else None
    if match is None or match.expert_id != payload.get("e") or match.expert.deleted_at is not None:
        raise LinkError("Ce lien n'est plus actif : cette mise en relation ne vous est plus attribuée.")
    return match


# ---------------------------------------------------------------- the expert's inbox


def inbox_token(expert: Expert) -> str:
    return _serializer(_INBOX_SALT).dumps({"e": expert.id})


def inbox_url(expert: Expert) -> str:
    """The inbox link of expert emails; deliberately not under ``/expert/``, which is
    kept for the one link that opens a need."""
    return f"{current_app.config['BASE_URL']}/mes-demandes/{inbox_token(expert)}"


def expert_for_inbox_token(token: str) -> Expert:
    """The expert the inbox link was issued to; refused like a match link, and revoked once the
    expert is deleted (their needs are then someone else's business)."""
    payload = _load(token, _INBOX_SALT)
    expert = db.session.get(Expert, payload.get("e")) if isinstance(payload, dict) else None
    if expert is None or expert.deleted_at is not None:
        raise LinkError("Ce lien n'est plus actif : il ne correspond plus à un expert de l'annuaire.")
    return expert


# ---------------------------------------------------------------- the business's satisfaction survey

# Its own salt: a survey token opens nothing else, and no other token opens a survey.
_SURVEY_SALT = "satisfaction-v1"


def survey_token(need_id: int) -> str:
    return _serializer(_SURVEY_SALT).dumps({"n": need_id})


def survey_url(need_id: int) -> str:
    return f"{current_app.config['BASE_URL']}/satisfaction/{survey_token(need_id)}"


def need_id_for_survey_token(token: str) -> int:
    """The need the survey link was made for (signed: it cannot be computed from an address)."""
    payload = _load(token, _SURVEY_SALT)
    need_id = payload.get("n") if isinstance(payload, dict) else None
    if not isinstance(need_id, int):
        raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.")
    return need_id
