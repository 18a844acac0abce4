"""The institutions' API keys: created and shown once, stored hashed, checked on every call.

A key reads ``pde_<prefix>_<secret>``: the prefix (public, unique) finds the row, and the
SHA-256 of the whole key is compared in constant time. A fast hash is enough here (unlike
passwords): the secret is 256 random bits, which no dictionary or brute force reaches, and a
slow hash would cost every API call. The old service recorded an expiry but never checked it:
here a key is refused from its ``valid_until`` on, and once revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import ApiKey, AuditEvent, Institution
from app.models.base import utcnow
from app.services.errors import ServiceError

DEFAULT_VALID_DAYS = 548  # 18 months
MAX_VALID_DAYS = 3 * 366
_KEY_RE = re.compile(r"^pde_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")


class KeyRefused(ServiceError):
    """Why a call's key is not accepted (said in the 401 problem's detail)."""


@dataclass
class NewKey:
    key: ApiKey
    secret: str  # the whole key, to show once


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(
    institution: Institution,
    *,
    valid_days: int = DEFAULT_VALID_DAYS,
    label: str = "",
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> NewKey:
    if institution.deleted_at is not None:
        raise ServiceError(f"L'institution « {institution.name} » est supprimée : elle ne peut recevoir de clé.")
    if not isinstance(valid_days, int) or not 1 <= valid_days <= MAX_VALID_DAYS:
        raise ServiceError(f"La durée de validité va de 1 à {MAX_VALID_DAYS} jours.")
    prefix = secrets.token_hex(6)
    raw = f"pde_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        institution=institution,
        label=(label or "").strip()[:200],
        prefix=prefix,
        key_hash=_digest(raw),
        valid_until=(now or utcnow()) + timedelta(days=valid_days),
        created_by_id=created_by_id,
    )
    db.session.add(key)
    db.session.flush()
    return NewKey(key, raw)


def authenticate(header: str | None, *, now: datetime | None = None) -> ApiKey:
    """The key of an ``Authorization: Bearer …`` header, or ``KeyRefused`` saying why."""
    scheme, _, raw = (header or "").strip().partition(" ")
    if not header:
        raise KeyRefused("Clé d'API manquante : envoyez l'en-tête « Authorization: Bearer <clé> ».")
    if scheme.lower() != "bearer" or not raw.strip():
        raise KeyRefused("En-tête Authorization invalide : attendu « Bearer <clé> ».")
    found = _KEY_RE.match(raw.strip())
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == found.group(1))) if found else None
    if key is None or not hmac.compare_digest(key.key_hash, _digest(raw.strip())):
        raise KeyRefused("Clé d'API inconnue.")
    if key.revoked_at is not None:
        raise KeyRefused("Cette clé d'API a été révoquée.")
    if (now or utcnow()) >= key.valid_until:
        raise KeyRefused(f"Cette clé d'API a expiré le {key.valid_until:%d/%m/%Y} : demandez-en une nouvelle.")
    if key.institution.deleted_at is not None:
        raise KeyRefused("L'institution de cette clé n'est plus active.")
    return key


def record_use(key: ApiKey, method: str, path: str, status: int) -> None:
    """The call in the audit trail (who, what, the answer's status; never the body) and the
    key's last use, in their own small transaction with the call's."""
    now = utcnow()
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    db.session.add(
        AuditEvent(
            created_at=now,
            actor=f"clé d'API {key.prefix} ({key.institution.name})"[:200],
            action="api_call",
            object_type="ApiKey",
            object_id=key.id,
            changes={"method": [None, method], "path": [None, path[:200]], "status": [None, status]},
        )
    )
    db.session.flush()


def revoke(key: ApiKey, *, now: datetime | None = None) -> bool:
    """Revoke a key; False when it already was (revoking twice changes nothing)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now or utcnow()
    db.session.flush()
    return True


def key_state(key: ApiKey, now: datetime | None = None) -> str:
    if key.revoked_at is not None:
        return "Révoquée"
    if (now or utcnow()) >= key.valid_until:
        return "Expirée"
    return "Active"
