"""Signed, expiring links that let an expert act on one match without a password: the token is the
credential, so it is signed, expires, and dies with the match.

The token carries the match and the expert it was issued to; it is refused when tampered
with, older than ``EXPERT_LINK_MAX_AGE_DAYS``, or revoked (match gone, expert deleted or no
longer the match's expert). The inbox link works the same way for all of one expert's matches,
under its own salt so that neither kind of token opens the other's page.

A page opened by a link shows other links (the inbox from a need, each need from the inbox):
those carry the *original* issue date of the link that was used (``o``), so no chain of pages
makes a link outlive the one it came from. An expired link's page offers a fresh one, sent by
email to the expert's address in the address book (``expert_for_expired_token``).
"""

from __future__ import annotations

import time

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


def _with_origin(payload: dict, origin: int | None) -> dict:
    return {**payload, "o": int(origin)} if origin is not None else payload


def expert_token(match: Match, *, origin: int | None = None) -> str:
    """``origin``: the issue date of the link the page showing this one was opened with."""
    return _serializer().dumps(_with_origin({"m": match.id, "e": match.expert_id}, origin))


def expert_url(match: Match) -> str:
    """The one link of an expert email that starts with ``{BASE_URL}/expert/``."""
    return f"{current_app.config['BASE_URL']}/expert/{expert_token(match)}"


_EXPIRED = "Ce lien a expiré. Recevez un nouveau lien par courriel, à votre adresse habituelle."


def _signed(token: str, salt: str, max_age: int | None) -> tuple[dict, int]:
    """The payload and the link's issue date (its own, or the one it inherited)."""
    try:
        payload, signed_at = _serializer(salt).loads(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired:
        raise ExpiredLink(_EXPIRED) from None
    except BadSignature:
        raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.") from None
    if not isinstance(payload, dict):
        raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.")
    origin = payload.get("o")
    issued = origin if isinstance(origin, int) else int(signed_at.timestamp())
    return payload, min(issued, int(signed_at.timestamp()))


def _load(token: str, salt: str):
    payload, issued = _signed(token, salt, _max_age())
    if time.time() - issued > _max_age():
        raise ExpiredLink(_EXPIRED)
    return payload


def link_origin(token: str, *, inbox: bool = False) -> int:
    """The issue date links shown on the page opened by ``token`` must carry."""
    return _signed(token, _INBOX_SALT if inbox else _SALT, None)[1]


def expert_for_expired_token(token: str) -> tuple[Expert, Match | None]:
    """The expert (and the match) of a genuine link, however old: whom to send a fresh link.
    A forged or altered token is refused as usual."""
    for salt in (_SALT, _INBOX_SALT):
        try:
            payload, _issued = _signed(token, salt, None)
        except InvalidLink:
            continue
        expert = db.session.get(Expert, payload.get("e"))
        if expert is None or expert.deleted_at is not None or not expert.email:
            raise LinkError("Ce lien n'est plus actif : il ne correspond plus à un expert de l'annuaire.")
        match = db.session.get(Match, payload.get("m")) if salt == _SALT else None
        return expert, match if match is not None and match.expert_id == expert.id else None
    raise InvalidLink("Ce lien n'est pas valide. Vérifiez qu'il a été copié en entier.")


def match_for_token(token: str) -> Match:
    payload = _load(token, _SALT)
    match = db.session.get(Match, payload.get("m")) if isinstance(payload, dict) else None
    if match is None or match.expert_id != payload.get("e") or match.expert.deleted_at is not None:
        raise LinkError("Ce lien n'est plus actif : cette mise en relation ne vous est plus attribuée.")
    return match


# ---------------------------------------------------------------- the expert's inbox


def inbox_token(expert: Expert, *, origin: int | None = None) -> str:
    return _serializer(_INBOX_SALT).dumps(_with_origin({"e": expert.id}, origin))


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
