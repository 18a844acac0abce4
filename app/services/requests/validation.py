"""The public form's rules: what a request must hold before it is stored, and its normal form.

Every function takes what a person typed and returns the value to store, or raises
:class:`InvalidValue` whose message is the French sentence shown next to the field. The
values returned are already normal (a second pass returns them unchanged), so a stored
request can be checked again with the same functions — the form fuzz test relies on it.

Choices made here:

- SIRET: spaces, dots and dashes are allowed while typing; stored as 14 ASCII digits.
  The checksum is python-stdnum's, which knows La Poste's rule (its établissements share
  SIREN 356 000 000 and follow a digit-sum rule instead of Luhn).
- Phone: stored in E.164 (``+33612345678``): unambiguous for overseas numbers (``+590…``),
  usable as is in ``tel:`` links, and formatted for display by whoever shows it. Numbers of
  metropolitan France and of the overseas territories are accepted, foreign ones are not.
- Email: stored as its ASCII form, lowercased (internationalised domains in punycode), so
  the confirmation email goes through any SMTP server and duplicates compare equal. Local
  parts outside ASCII are refused: many mail servers still refuse them.
- Texts: NUL bytes and other control characters are refused (PostgreSQL rejects NUL, and
  nobody types them); line breaks are kept in the description only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

import phonenumbers
from email_validator import EmailNotValidError, EmailUndeliverableError, validate_email
from stdnum.fr import siret as stdnum_siret

from app.services.errors import ServiceError
from app.services.reference.geo import communes_for_postal_code

FIELDS = ("full_name", "email", "phone", "siret", "postal_code", "insee_code", "description")

FULL_NAME_MAX = 200
DESCRIPTION_MIN = 20
DESCRIPTION_MAX = 5000
TRACKING_MAX = 200

# Metropolitan France, then the overseas departments and collectivities whose numbers a
# French business may give (they have their own country calling codes).
FRENCH_PHONE_REGIONS = ("FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "NC", "PF", "WF")

_SIRET_SEPARATORS = re.compile(r"[\s.\-]+")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_POSTAL_CODE = re.compile(r"[0-9]{5}", re.ASCII)
_INSEE_CODE = re.compile(r"[0-9]{5}|2[AB][0-9]{3}", re.ASCII)


class InvalidValue(ServiceError):
    """A value the form refuses; ``str(error)`` is the French message shown next to the field."""


def _has_control_characters(text: str, allowed: str = "") -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in text)


def _fr_number(n: int) -> str:
    """5000 → « 5 000 », with the narrow no-break space French typography puts between thousands."""
    return f"{n:,}".replace(",", "\u202f")


def display_phone(value: str | None) -> str:
    """A stored E.164 number as French people read it: « 06 12 34 56 78 », « +590 590 12 34 56 »."""
    import phonenumbers

    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, "FR")
    except phonenumbers.NumberParseException:
        return value
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if number.country_code == 33
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, fmt)


# ---------------------------------------------------------------- one field at a time


def clean_full_name(value: str | None) -> str:
    name = " ".join((value or "").split())
    if not name:
        raise InvalidValue("Indiquez votre prénom et votre nom.")
    if _has_control_characters(name):
        raise InvalidValue("Le nom contient des caractères non autorisés.")
    if len(name) > FULL_NAME_MAX:
        raise InvalidValue(f"Le nom ne doit pas dépasser {FULL_NAME_MAX} caractères.")
    if not any(c.isalpha() for c in name):
        raise InvalidValue("Indiquez votre prénom et votre nom en lettres.")
    return name


def clean_email(value: str | None, *, check_deliverability: bool = False) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidValue("Indiquez votre adresse email.")
    if _has_control_characters(text) or len(text) > 320:
        raise InvalidValue("Indiquez une adresse email valide, par exemple marie.dupont@entreprise.fr.")
    try:
        result = validate_email(text, check_deliverability=check_deliverability, allow_smtputf8=False)
    except EmailUndeliverableError:
        raise InvalidValue(
            "Le domaine de cette adresse email ne reçoit pas d'emails : vérifiez ce qui suit le « @ »."
        ) from None
    except EmailNotValidError:
        raise InvalidValue("Indiquez une adresse email valide, par exemple marie.dupont@entreprise.fr.") from None
    return result.ascii_email.lower()


def clean_phone(value: str | None) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidValue("Indiquez un numéro de téléphone pour que le conseiller vous rappelle.")
    message = "Indiquez un numéro de téléphone français valide, par exemple 06 12 34 56 78."
    if _has_control_characters(text):
        raise InvalidValue(message)
    for region in FRENCH_PHONE_REGIONS:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            raise InvalidValue(message) from None
        if phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) in (
            FRENCH_PHONE_REGIONS
        ):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if text.startswith("+"):
            break  # an international number does not depend on the region guessed
    raise InvalidValue(message)


def clean_siret(value: str | None) -> str:
    digits = _SIRET_SEPARATORS.sub("", value or "")
    if not digits:
        raise InvalidValue("Indiquez le numéro SIRET de votre entreprise (14 chiffres).")
    if not _DIGITS.fullmatch(digits) or len(digits) != 14:
        raise InvalidValue("Le numéro SIRET doit comporter 14 chiffres.")
    if not stdnum_siret.is_valid(digits):
        raise InvalidValue("Ce numéro SIRET n'est pas valide : vérifiez les 14 chiffres.")
    return digits


def clean_postal_code(value: str | None) -> str:
    """Format only; whether it exists is :func:`communes_of_postal_code`'s question."""
    code = re.sub(r"\s+", "", value or "")
    if not code:
        raise InvalidValue("Indiquez le code postal de votre établissement.")
    if not _POSTAL_CODE.fullmatch(code):
        raise InvalidValue("Le code postal doit comporter 5 chiffres.")
    return code


def communes_of_postal_code(postal_code: str) -> list:
    """The communes of a well-formed postal code; refuses a code that belongs to none."""
    communes = communes_for_postal_code(postal_code)
    if not communes:
        raise InvalidValue("Ce code postal n'existe pas : vérifiez-le.")
    return communes


def choose_commune(insee_code: str | None, communes: list) -> str:
    """The commune of the request among its postal code's ``communes``.

    Empty is fine when there is only one; with several, the person must choose.
    """
    code = (insee_code or "").strip().upper()
    if not code:
        if len(communes) == 1:
            return communes[0].code
        raise InvalidValue("Ce code postal couvre plusieurs communes : choisissez la vôtre.")
    if not _INSEE_CODE.fullmatch(code) or code not in {c.code for c in communes}:
        raise InvalidValue("Cette commune ne correspond pas au code postal : choisissez-la dans la liste.")
    return code


def clean_description(value: str | None) -> str:
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise InvalidValue("Décrivez votre besoin.")
    if _has_control_characters(text, allowed="\n\t"):
        raise InvalidValue("La description contient des caractères non autorisés.")
    if len(text) < DESCRIPTION_MIN:
        raise InvalidValue(
            f"Décrivez votre besoin en {DESCRIPTION_MIN} caractères au moins, pour que le conseiller le comprenne."
        )
    if len(text) > DESCRIPTION_MAX:
        raise InvalidValue(
            f"La description ne doit pas dépasser {_fr_number(DESCRIPTION_MAX)} caractères "
            f"(elle en compte {_fr_number(len(text))})."
        )
    return text


def clean_tracking(value: str | None) -> str | None:
    """Campaign parameters are kept, never refused: cut to the column size, controls removed."""
    text = "".join(c for c in (value or "") if not _has_control_characters(c)).strip()
    return text[:TRACKING_MAX] or None


# ---------------------------------------------------------------- the whole form


@dataclass
class CleanedSolicitation:
    """The form's verdict: normal values of the valid fields, a message per invalid field, and
    the communes of the postal code (to offer a choice when there are several)."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    communes: list = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.errors

    @property
    def needs_commune_choice(self) -> bool:
        return len(self.communes) > 1


def clean_solicitation(raw: Mapping[str, str | None], *, check_deliverability: bool = False) -> CleanedSolicitation:
    """Check every field of a request; all errors at once, so the form shows them together."""
    result = CleanedSolicitation()
    simple = {
        "full_name": clean_full_name,
        "email": lambda v: clean_email(v, check_deliverability=check_deliverability),
        "phone": clean_phone,
        "siret": clean_siret,
        "postal_code": clean_postal_code,
        "description": clean_description,
    }
    for name, clean in simple.items():
        try:
            result.values[name] = clean(raw.get(name))
        except InvalidValue as error:
            result.errors[name] = str(error)
    if "postal_code" in result.values:
        try:
            result.communes = communes_of_postal_code(result.values["postal_code"])
        except InvalidValue as error:
            result.errors["postal_code"] = str(error)
            del result.values["postal_code"]
    if result.communes:
        try:
            result.values["insee_code"] = choose_commune(raw.get("insee_code"), result.communes)
        except InvalidValue as error:
            result.errors["insee_code"] = str(error)
    return result
