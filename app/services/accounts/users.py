"""Back-office accounts: creation, hashing, login with lockout, soft deletion.

The password policy, invitations and reset links live in ``services.accounts``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import ROLES, Antenne, Institution, LoginFailure, User
from app.models.base import utcnow
from app.services.accounts import sessions
from app.services.accounts.passwords import check_password
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email

_hasher = PasswordHasher()
# Verified against when the address is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("placeholder-password-for-timing")


def require_staff(user: User | None, what: str) -> User:
    """Refuse, in French, a verb reserved to the support team when ``user`` is not staff."""
    if user is None or not getattr(user, "is_admin", False):
        raise ServiceError(f"Seule l'équipe Place des Entreprises peut {what}.")
    return user


def normalize_email(raw: str) -> str:
    try:
        return validate_email((raw or "").strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ServiceError(f"Adresse email invalide : « {raw} ».") from None


def hash_password(password: str) -> str:
    """The argon2 hash; callers check the policy first (``accounts.check_password``)."""
    return _hasher.hash(password)


def create_user(
    email: str,
    *,
    role: str,
    password: str | None = None,
    full_name: str | None = None,
    institution_slug: str | None = None,
    antenne_id: int | None = None,
) -> User:
    """Create a staff account or a partner referent; referents need an institution or an antenne.

    With a password (the CLI, staff who set one), the policy applies; without one the account
    waits for an invitation (``accounts.invite_user``).
    """
    if role not in ROLES:
        raise ServiceError(f"Rôle inconnu : « {role} » (attendu : admin ou referent).")
    address = normalize_email(email)
    if db.session.scalar(select(User).where(func.lower(User.email) == address)):
        raise ServiceError(f"Un compte existe déjà pour {address}.")
    institution = antenne = None
    if institution_slug:
        institution = db.session.scalar(
            select(Institution).where(Institution.slug == institution_slug, Institution.deleted_at.is_(None))
        )
        if institution is None:
            raise ServiceError(f"Institution inconnue : « {institution_slug} ».")
    if antenne_id is not None:
        antenne = db.session.get(Antenne, antenne_id)
        if antenne is None or antenne.deleted_at is not None:
            raise ServiceError(f"Antenne inconnue : {antenne_id}.")
        if institution and antenne.institution_id != institution.id:
            raise ServiceError("Cette antenne n'appartient pas à cette institution.")
        institution = institution or antenne.institution
    if role == "referent" and institution is None:
        raise ServiceError(
            "Un référent doit être rattaché à une institution (--institution) ou une antenne (--antenne)."
        )
    if password:
        check_password(password, email=address, full_name=full_name)
    user = User(
        email=address,
        full_name=full_name,
        role=role,
        institution=institution,
        antenne=antenne,
        password_hash=hash_password(password) if password else None,
        password_changed_at=utcnow() if password else None,
    )
    db.session.add(user)
    db.session.flush()
    return user


def check_scope(user: User) -> None:
    """A referent belongs to an institution, and its antenne (if any) to that institution.

    Called on creation and on every edit, so no path leaves a referent without a scope
    (a referent without one would see nothing, or worse, depending on the policy).
    """
    if user.antenne is not None:
        if user.institution is not None and user.antenne.institution_id != user.institution.id:
            raise ServiceError("Cette antenne n'appartient pas à cette institution.")
        user.institution = user.institution or user.antenne.institution
    if user.role == "referent" and user.institution is None:
        raise ServiceError("Un référent doit être rattaché à une institution ou une antenne.")


def set_password(user: User, password: str, *, now: datetime | None = None) -> None:
    """A new password under the policy; ends the account's other sessions and any lock."""
    check_password(password, user)
    user.password_hash = hash_password(password)
    user.password_changed_at = now or utcnow()
    forget_failures(user)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password or "")
    except (VerificationError, InvalidHashError):
        return False


def verify_password(user: User, password: str) -> bool:
    return bool(user.password_hash) and _verify(user.password_hash, password)


def _window(now: datetime) -> datetime:
    return now - timedelta(minutes=int(current_app.config.get("LOGIN_LOCK_MINUTES", 15)))


def _max_failures() -> int:
    return int(current_app.config.get("LOGIN_MAX_FAILURES", 5))


def _failures(address: str, now: datetime, origin: str | None = None) -> int:
    query = select(func.count(LoginFailure.id)).where(
        LoginFailure.address == address, LoginFailure.created_at > _window(now)
    )
    if origin is not None:
        query = query.where(LoginFailure.origin == origin)
    return db.session.scalar(query) or 0


def origin_locked(email: str, origin: str, *, now: datetime | None = None) -> bool:
    """Whether ``origin`` failed ``LOGIN_MAX_FAILURES`` times on this address within the lock's
    window: that origin, and that origin only, is refused for the address meanwhile (an
    unknown address locks the same way, so a lock tells nothing about accounts)."""
    address = (email or "").strip().lower()[:254]
    return _failures(address, now or utcnow(), origin[:45]) >= _max_failures()


def login_delay(email: str, *, now: datetime | None = None) -> float:
    """Seconds to wait before answering a failed login on this address: failures from every
    origin slow the next attempts down (``LOGIN_SLOWDOWN_SECONDS`` each beyond the allowed
    count, up to ``LOGIN_SLOWDOWN_MAX_SECONDS``), which no attacker can turn into a lock."""
    address = (email or "").strip().lower()[:254]
    extra = _failures(address, now or utcnow()) - _max_failures()
    config = current_app.config
    step, cap = float(config.get("LOGIN_SLOWDOWN_SECONDS", 0.5)), float(config.get("LOGIN_SLOWDOWN_MAX_SECONDS", 3))
    return min(cap, step * extra) if extra > 0 else 0.0


def authenticate(email: str, password: str, *, origin: str = "inconnue", now: datetime | None = None) -> User | None:
    """The active user with this email and password, or None, at the same cost either way.

    Each failure is recorded for the address and the ``origin`` (the client's IP address):
    ``LOGIN_MAX_FAILURES`` of them within ``LOGIN_LOCK_MINUTES`` lock the address *for that
    origin*, right password included, and the owner elsewhere is not locked out. The owner
    is told by email when their account fails that many times in a row (``failed_logins``),
    once an hour at most. A success clears the origin's failures and the count.
    """
    now = now or utcnow()
    address = (email or "").strip().lower()[:254]
    origin = (origin or "inconnue")[:45]
    user = db.session.scalar(select(User).where(func.lower(User.email) == address, User.deleted_at.is_(None)))
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    correct = _verify(stored, password)
    locked = _failures(address, now, origin) >= _max_failures()
    if locked:
        return None
    if user is None or not user.password_hash or not correct:
        db.session.execute(
            delete(LoginFailure).where(LoginFailure.address == address, LoginFailure.created_at <= _window(now))
        )
        db.session.add(LoginFailure(address=address, origin=origin, created_at=now))
        if user is not None and user.password_hash:
            user.failed_logins = (user.failed_logins or 0) + 1
            if user.failed_logins % _max_failures() == 0:
                _warn_owner(user, now)
        db.session.flush()
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
    db.session.execute(delete(LoginFailure).where(LoginFailure.address == address, LoginFailure.origin == origin))
    user.failed_logins = 0
    user.last_login_at = now
    db.session.flush()
    return user


def forget_failures(user: User) -> None:
    """Staff's « Déverrouiller », and a new password: every origin may try again."""
    if user.email:
        db.session.execute(delete(LoginFailure).where(LoginFailure.address == user.email.strip().lower()))
    user.failed_logins = 0
    db.session.flush()


def _warn_owner(user: User, now: datetime) -> None:
    """« Tentatives de connexion sur votre compte », once an hour at most."""
    queue_email(
        f"user:{user.id}:tentatives:{now:%Y-%m-%dT%H}",
        to=user.email,
        template="account_attacked",
        context={
            "full_name": user.full_name or user.email,
            "failures": user.failed_logins,
            "lock_minutes": int(current_app.config.get("LOGIN_LOCK_MINUTES", 15)),
            "contact_email": current_app.config["CONTACT_EMAIL"],
        },
    )


def delete_user(user: User) -> None:
    """Soft delete: the row stays for the audit trail, the personal data goes, and every open
    session ends (a browser still logged in is logged out at its next request)."""
    sessions.end_all(user, "deactivated")
    user.deleted_at = utcnow()
    user.email = None
    user.full_name = None
    user.password_hash = None
    db.session.flush()
