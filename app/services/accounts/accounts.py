"""Account life cycle: invitation, password reset, lock, session binding (the password policy is
``passwords``).

Staff never choose a password for a partner: they invite, and the person picks one through a
signed link. Invitation and reset links are single-use without any token table: each carries a
fingerprint of the account's address, password hash and invitation date, so it dies as soon as
a password is set (the hash changes), a newer invitation is sent, or the address changes.

``now`` parameters exist so tests control time (link expiry, lock duration) without sleeping;
interfaces never pass them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from app.dates import as_utc, paris_text
from app.extensions import db
from app.models import ROLES, Antenne, Institution, OutboundEmail, User
from app.models.base import utcnow
from app.services.accounts.passwords import PasswordRejected, WrongCurrentPassword
from app.services.accounts.users import check_scope, forget_failures, normalize_email, set_password, verify_password
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email, render_email

_INVITATION_SALT = "account-invitation-v1"
_RESET_SALT = "account-password-reset-v1"


# ---------------------------------------------------------------- errors


class AccountLinkError(ServiceError):
    """An invitation or reset link that cannot be used; ``title`` and ``http_status`` let the
    page answer like the expert links do (404 invalid or used, 410 expired)."""

    title = "Ce lien n'est plus valide"
    http_status = 404


class ExpiredAccountLink(AccountLinkError):
    title = "Ce lien a expiré"
    http_status = 410


# ---------------------------------------------------------------- what staff and referents read


def moment_text(value: datetime | None) -> str:
    """« 14/05/2026 à 09:30 », Paris time."""
    return paris_text(value, "%d/%m/%Y à %H:%M")


def role_and_scope(user: User) -> str:
    """« Équipe support », « Référent de l'institution X » or « Référent de l'antenne Y (institution X) »."""
    if user.role == "admin":
        return "Équipe support"
    if user.antenne is not None:
        return f"Référent de l'antenne {user.antenne.name} (institution {user.antenne.institution.name})"
    if user.institution is not None:
        return f"Référent de l'institution {user.institution.name}"
    return "Référent sans rattachement"


def recent_failures(user: User) -> int:
    """Failed logins in a row on the account (from any origin): what staff see."""
    return user.failed_logins or 0


def account_state(user: User, now: datetime | None = None) -> str:
    """The one-line state staff see in the users list."""
    now = now or utcnow()
    if user.deleted_at is not None:
        return "Supprimé"
    if recent_failures(user) >= int(current_app.config.get("LOGIN_MAX_FAILURES", 5)):
        return f"{recent_failures(user)} échecs de connexion consécutifs (origines bloquées {current_app.config.get('LOGIN_LOCK_MINUTES', 15)} min)"
    if not user.password_hash:
        if user.invited_at is None:
            return "Sans mot de passe (à inviter)"
        expired = as_utc(user.invited_at) + invitation_max_age() < now
        return f"Invité le {moment_text(user.invited_at)}" + (" (invitation expirée)" if expired else "")
    return "Actif"


# ---------------------------------------------------------------- signed, single-use links


def invitation_max_age() -> timedelta:
    return timedelta(hours=int(current_app.config.get("INVITATION_MAX_AGE_HOURS", 72)))


def reset_max_age() -> timedelta:
    return timedelta(minutes=int(current_app.config.get("PASSWORD_RESET_MAX_AGE_MINUTES", 60)))


def _stamp(value: datetime | None) -> str:
    value = as_utc(value)
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f") if value else ""


def link_fingerprint(user: User) -> str:
    """Changes whenever the link must die: a password set, a new invitation, a new address.

    Hashed, because an itsdangerous payload is signed, not encrypted.
    """
    material = f"{user.id}|{user.email}|{user.password_hash or ''}|{_stamp(user.invited_at)}"
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def session_fingerprint(user: User) -> str:
    """Stored in the session at login: a new password (or address) ends every other session."""
    return hashlib.sha256(f"{user.id}|{user.email}|{user.password_hash or ''}".encode()).hexdigest()[:24]


def _serializer(salt: str, now: datetime | None = None) -> URLSafeTimedSerializer:
    if now is None:
        return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)
    stamp = int(now.timestamp())

    class _SignerAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt, signer=_SignerAt)


def _token(user: User, salt: str, now: datetime | None) -> str:
    return _serializer(salt, now).dumps({"u": user.id, "f": link_fingerprint(user)})


def invitation_url(user: User, *, now: datetime | None = None) -> str:
    return f"{current_app.config['BASE_URL']}/invitation/{_token(user, _INVITATION_SALT, now)}"


def reset_url(user: User, *, now: datetime | None = None) -> str:
    return f"{current_app.config['BASE_URL']}/mot-de-passe/{_token(user, _RESET_SALT, now)}"


def _user_for(token: str, salt: str, max_age: timedelta, expired_message: str, now: datetime | None) -> User:
    try:
        payload = _serializer(salt, now).loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired:
        raise ExpiredAccountLink(expired_message) from None
    except BadSignature:
        raise AccountLinkError(
            "Ce lien n'est pas valide : vérifiez qu'il a été copié en entier depuis l'email reçu."
        ) from None
    user = db.session.get(User, payload.get("u")) if isinstance(payload, dict) else None
    if user is None or user.deleted_at is not None or payload.get("f") != link_fingerprint(user):
        raise AccountLinkError(
            "Ce lien a déjà servi ou a été remplacé par un plus récent. Si vous avez déjà choisi votre mot de "
            "passe, connectez-vous ; sinon utilisez le dernier email reçu ou « Mot de passe oublié ? »."
        )
    return user


def user_for_invitation(token: str, *, now: datetime | None = None) -> User:
    """The invited account, or ``AccountLinkError`` (read only: the page shows the form)."""
    return _user_for(
        token,
        _INVITATION_SALT,
        invitation_max_age(),
        "Cette invitation a expiré. Utilisez « Mot de passe oublié ? » sur la page de connexion avec "
        "l'adresse à laquelle vous l'avez reçue, ou demandez à l'équipe Place des Entreprises de vous la renvoyer.",
        now,
    )


def user_for_reset(token: str, *, now: datetime | None = None) -> User:
    return _user_for(
        token,
        _RESET_SALT,
        reset_max_age(),
        "Ce lien de réinitialisation a expiré. Demandez-en un nouveau avec « Mot de passe oublié ? ».",
        now,
    )


# ---------------------------------------------------------------- emails


def _next_key(user: User, kind: str) -> str:
    """``user:<id>:<kind>:<n>``: each sending is its own outbox event, sent once."""
    prefix = f"user:{user.id}:{kind}:"
    sent = db.session.scalar(
        select(func.count()).select_from(OutboundEmail).where(OutboundEmail.key.like(f"{prefix}%"))
    )
    return f"{prefix}{sent + 1}"


def _expiry_text(issued: datetime, max_age: timedelta) -> str:
    hours = max_age.total_seconds() / 3600
    duration = f"{int(hours)} heure{'s' if hours >= 2 else ''}" if hours >= 1 else f"{int(hours * 60)} minutes"
    return f"{duration}, jusqu'au {moment_text(issued + max_age)}"


def _queue_invitation(user: User, now: datetime) -> OutboundEmail:
    return queue_email(
        _next_key(user, "invitation"),
        to=user.email,
        template="user_invitation",
        context={
            "user": user,
            "inviter": str(user.invited_by) if user.invited_by else "L'équipe Place des Entreprises",
            "role_scope": role_and_scope(user),
            "url": invitation_url(user, now=now),
            "expiry": _expiry_text(now, invitation_max_age()),
        },
    )


def _queue_reset(user: User, now: datetime) -> OutboundEmail:
    return queue_email(
        _next_key(user, "password-reset"),
        to=user.email,
        template="user_password_reset",
        context={
            "user": user,
            "role_scope": role_and_scope(user),
            "url": reset_url(user, now=now),
            "expiry": _expiry_text(now, reset_max_age()),
            "pending": not user.password_hash,
        },
    )


# ---------------------------------------------------------------- verbs


def invite_user(
    email: str,
    role: str,
    institution: Institution | None = None,
    antenne: Antenne | None = None,
    *,
    by: User | None,
    full_name: str | None = None,
    now: datetime | None = None,
) -> User:
    """Create the account without a password (or refresh a pending one) and email the link.

    A re-invitation updates the role and scope, dates the invitation anew (older links die)
    and sends a new email under the next key.
    """
    if role not in ROLES:
        raise ServiceError(f"Rôle inconnu : « {role} » (attendu : admin ou referent).")
    address = normalize_email(email)
    user = db.session.scalar(select(User).where(func.lower(User.email) == address))
    if user is not None and user.password_hash:
        raise ServiceError(
            f"Un compte actif existe déjà pour {address} : envoyez-lui plutôt un lien de réinitialisation."
        )
    if user is None:
        user = User(email=address)
        db.session.add(user)
    user.role = role
    user.full_name = full_name or user.full_name
    user.institution, user.antenne = institution, antenne
    check_scope(user)
    return _invite(user, by=by, now=now)


def resend_invitation(user: User, *, by: User | None, now: datetime | None = None) -> User:
    """Staff's « Renvoyer l'invitation »: only for an account still waiting for its password."""
    if user.deleted_at is not None:
        raise ServiceError("Ce compte est supprimé.")
    if user.password_hash:
        raise ServiceError("Ce compte est déjà actif : envoyez plutôt un lien de réinitialisation.")
    return _invite(user, by=by, now=now)


def _invite(user: User, *, by: User | None, now: datetime | None) -> User:
    now = now or utcnow()
    user.invited_at = now
    user.invited_by = by
    db.session.flush()
    _queue_invitation(user, now)
    db.session.flush()
    return user


def _set_password(user: User, password: str, now: datetime) -> None:
    set_password(user, password, now=now)


def _logged_in(user: User, now: datetime) -> None:
    """The pages log the person in right after a link sets the password."""
    user.last_login_at = now
    db.session.flush()


def accept_invitation(token: str, password: str, *, now: datetime | None = None) -> User:
    """Set the first password through the invitation link; the link dies with it."""
    now = now or utcnow()
    user = user_for_invitation(token, now=now)
    _set_password(user, password, now)
    _logged_in(user, now)
    return user


def request_password_reset(email: str, *, now: datetime | None = None) -> None:
    """« Mot de passe oublié »: email a reset link if the address has an account, else nothing.

    Silent either way and the same work either way (the email is rendered even for an unknown
    address, only not stored), so neither the answer nor its timing tells whether the address
    has an account.
    """
    now = now or utcnow()
    try:
        address = normalize_email(email)
    except ServiceError:
        return
    user = db.session.scalar(select(User).where(func.lower(User.email) == address, User.deleted_at.is_(None)))
    if user is None:
        ghost = User(id=0, email=address, role="referent")
        render_email(
            "user_password_reset",
            user=ghost,
            role_scope="",
            url=reset_url(ghost, now=now),
            expiry=_expiry_text(now, reset_max_age()),
            pending=False,
        )
        return
    _queue_reset(user, now)
    db.session.flush()


def send_password_reset(user: User, *, now: datetime | None = None) -> User:
    """Staff's « Envoyer un lien de réinitialisation »."""
    if user.deleted_at is not None or not user.email:
        raise ServiceError("Ce compte est supprimé.")
    _queue_reset(user, now or utcnow())
    db.session.flush()
    return user


def reset_password(token: str, password: str, *, now: datetime | None = None) -> User:
    """Set a new password through a reset link; also lifts a lock (the mailbox proved who it is)."""
    now = now or utcnow()
    user = user_for_reset(token, now=now)
    _set_password(user, password, now)
    _logged_in(user, now)
    return user


def change_password(user: User, current: str, new: str, *, now: datetime | None = None) -> User:
    """« Mon compte »: the current password is required, so an open session alone cannot take the account."""
    if not verify_password(user, current):
        raise WrongCurrentPassword("Mot de passe actuel incorrect.")
    if current == new:
        raise PasswordRejected("Choisissez un mot de passe différent de l'actuel.")
    _set_password(user, new, now or utcnow())
    return user


def unlock(user: User) -> User:
    """Staff's « Déverrouiller »: every origin the failures locked may try again."""
    forget_failures(user)
    return user


def describe(user: User) -> dict[str, Any]:
    """What « Mon compte » shows."""
    return {
        "full_name": user.full_name or "",
        "email": user.email,
        "role_scope": role_and_scope(user),
        "password_changed_at": moment_text(user.password_changed_at),
    }
