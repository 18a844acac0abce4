"""The password policy: long enough, not personal, not breached, not guessable.

One place decides, for every way a password is chosen (an invitation accepted, a reset, « Mon
compte », ``flask users create``, a staff member's form).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from flask import current_app

from app.models import User
from app.services.accounts.pwned_passwords import PwnedPasswordsClient
from app.services.errors import ServiceError

MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase; bounds the strength estimator's work on hostile input.
MAX_PASSWORD_LENGTH = 128
# zxcvbn's estimate below which a password is refused: 10^8 guesses is its score 3, "safely
# unguessable" against an online attack and slow against an offline one on argon2 hashes.
MIN_GUESSES_LOG10 = 8
SERVICE_WORDS = ["place des entreprises", "placedesentreprises", "entreprises", "conseiller"]


class PasswordRejected(ServiceError):
    """The chosen password breaks the policy; the message says which rule, in French."""


class WrongCurrentPassword(PasswordRejected):
    """« Mon compte »: the current password given is not the account's."""


def _plain(text: str) -> str:
    """Lower case, accents and punctuation dropped: « Marie-Hélène » and « mariehelene » compare equal."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).lower())


def _personal_words(email: str | None, full_name: str | None) -> list[str]:
    """The address, its local part and the name, plain, longest first."""
    words = {_plain(w) for w in (email or "", (email or "").split("@", 1)[0], full_name or "")}
    return sorted((w for w in words if len(w) >= 4), key=len, reverse=True)


def _name_pieces(email: str | None, full_name: str | None) -> list[str]:
    """« marie », « dupont »…: words the strength estimator treats as the most guessable of all."""
    texts = [(email or "").split("@", 1)[0], full_name or ""]
    return [piece for text in texts for piece in re.split(r"[^\w]+", text.lower()) if len(piece) >= 3]


# What must remain of a password once the address and the name are taken out of it.
MIN_OTHER_CHARACTERS = 8


def _pwned_count(password: str) -> int | None:
    if not current_app.config.get("PWNED_PASSWORDS_API"):
        return None

    client = PwnedPasswordsClient(
        current_app.config["PWNED_PASSWORDS_API_URL"],
        timeout=float(current_app.config.get("PWNED_PASSWORDS_TIMEOUT_SECONDS", 2)),
    )
    return client.breach_count(password)


BREACHED_MESSAGE = (
    "Ce mot de passe figure dans les listes de mots de passe divulgués lors de fuites de données : "
    "choisissez-en un autre."
)
BREACHED_VARIANT_MESSAGE = (
    "Ce mot de passe reprend, à peine modifié, un mot de passe divulgué lors de fuites de données : "
    "choisissez-en un autre."
)


def check_password(
    password: str, user: User | None = None, *, email: str | None = None, full_name: str | None = None
) -> None:
    """Refuse (``PasswordRejected``) a password that is short, personal, breached or guessable.

    The breached list is zxcvbn's: the 30,000 passwords seen most often in public breaches
    (French favourites such as « azertyuiop » or « motdepasse » included), matched exactly and,
    through zxcvbn's estimator, with the usual disguises (digits appended, l33t, keyboard walks,
    repetitions). Have I Been Pwned is asked as well when ``PWNED_PASSWORDS_API`` is on.
    """
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"Le mot de passe doit compter au moins {MIN_PASSWORD_LENGTH} caractères.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"Le mot de passe ne doit pas dépasser {MAX_PASSWORD_LENGTH} caractères.")
    email = email if email is not None else (user.email if user else None)
    full_name = full_name if full_name is not None else (user.full_name if user else None)
    personal = _personal_words(email, full_name)
    rest = _plain(password)
    for word in personal:
        rest = rest.replace(word, "")
    if personal and len(rest) < MIN_OTHER_CHARACTERS and len(rest) < len(_plain(password)):
        raise PasswordRejected("Le mot de passe ne doit reprendre ni votre adresse email ni votre nom.")
    zxcvbn, frequency_lists = _zxcvbn()
    if password.lower() in _breached_set(frequency_lists):
        raise PasswordRejected(BREACHED_MESSAGE)
    estimate = zxcvbn(password, user_inputs=[*personal, *_name_pieces(email, full_name), *SERVICE_WORDS])
    if _disguised_breach(estimate["sequence"]):
        raise PasswordRejected(BREACHED_VARIANT_MESSAGE)
    if estimate["guesses_log10"] < MIN_GUESSES_LOG10:
        raise PasswordRejected(
            "Ce mot de passe est trop facile à deviner (mot de passe courant, suite de touches ou de chiffres, "
            "répétition…) : allongez-le, par exemple avec quelques mots sans rapport entre eux."
        )
    if (_pwned_count(password) or 0) > 0:
        raise PasswordRejected(BREACHED_MESSAGE)


# « motdepasse2024 », « Marseille2024! »: one breached password and a few characters around it.
MAX_CHARACTERS_AROUND_A_BREACH = 5


def _disguised_breach(sequence: list[dict[str, Any]]) -> bool:
    breached = [m for m in sequence if m["pattern"] == "dictionary" and m.get("dictionary_name") == "passwords"]
    around = sum(len(m["token"]) for m in sequence if m not in breached)
    return len(breached) == 1 and around <= MAX_CHARACTERS_AROUND_A_BREACH


_BREACHED: set[str] | None = None


def _zxcvbn():
    """zxcvbn and its lists, loaded the first time a password is judged: its dictionaries weigh
    12 MiB in every process that imports the app (the email worker, the cron) otherwise."""
    from zxcvbn import zxcvbn
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return zxcvbn, FREQUENCY_LISTS


def _breached_set(lists: dict[str, list[str]]) -> set[str]:
    global _BREACHED
    if _BREACHED is None:
        _BREACHED = set(lists["passwords"])
    return _BREACHED
