"""The Reply-To address of an expert email: ``reponse+<token>@<INBOUND_EMAIL_DOMAIN>``, bound to
the match it is about, signed, and dated.

The token is lowercase on purpose: some mail servers lowercase the local part of an address,
and a base64 signature (itsdangerous' usual alphabet) would not survive it. It is
``<match id>-<expert id>-<issue time>`` in base 36 followed by an 80-bit HMAC in base 32, all
lowercase, so verification lowercases whatever arrives and still checks every bit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from flask import current_app

from app.models import Match
from app.services.errors import ServiceError

LOCAL_PART_PREFIX = "reponse"
_SALT = b"inbound-reply"
_SIGNATURE_BYTES = 10  # 80 bits: 16 base-32 characters
DEFAULT_MAX_AGE_DAYS = 180

_TOKEN_RE = re.compile(r"^([0-9a-z]{1,13})-([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})$")
ADDRESS_RE = re.compile(rf"^{LOCAL_PART_PREFIX}\+([^@\s]+)@([^@\s]+)$", re.IGNORECASE)


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _signature(payload: str) -> str:
    key = hashlib.sha256(_SALT + b"\0" + str(current_app.config["SECRET_KEY"]).encode()).digest()
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def reply_token(match: Match, *, issued_at: float | None = None) -> str:
    """The signed, case-insensitive token of ``match`` (``issued_at``: Unix time, default now)."""
    issued = int(time.time() if issued_at is None else issued_at)
    payload = f"{_b36(match.id)}-{_b36(match.expert_id)}-{_b36(issued)}"
    return f"{payload}-{_signature(payload)}"


def reply_address(match: Match, *, issued_at: float | None = None) -> str | None:
    """The Reply-To of an expert email about ``match``; None when replies by email are off."""
    domain = current_app.config.get("INBOUND_EMAIL_DOMAIN")
    if not domain:
        return None
    return f"{LOCAL_PART_PREFIX}+{reply_token(match, issued_at=issued_at)}@{domain}"


class ReplyRefused(ServiceError):
    """Why a reply is held; the message is the French reason staff read."""


@dataclass(frozen=True)
class TokenClaim:
    match_id: int
    expert_id: int


def verify_token(token: str, *, now: float | None = None) -> TokenClaim:
    """The match and expert a token was issued for; raises ReplyRefused when forged or expired."""
    token = token.strip().lower()
    found = _TOKEN_RE.match(token)
    if not found:
        raise ReplyRefused("Adresse de réponse falsifiée ou tronquée : le jeton n'a pas la forme attendue.")
    payload = token.rsplit("-", 1)[0]
    if not hmac.compare_digest(_signature(payload), found.group(4)):
        raise ReplyRefused("Adresse de réponse falsifiée : la signature du jeton ne correspond pas.")
    max_days = int(current_app.config.get("INBOUND_REPLY_MAX_AGE_DAYS") or DEFAULT_MAX_AGE_DAYS)
    issued = int(found.group(3), 36)
    if (time.time() if now is None else now) - issued > max_days * 86400:
        raise ReplyRefused(f"Adresse de réponse expirée : elle date de plus de {max_days} jours.")
    return TokenClaim(match_id=int(found.group(1), 36), expert_id=int(found.group(2), 36))
