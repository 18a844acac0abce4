"""The public request form: fields, bot traps, and the bridge to the validation rules.

The rules themselves live in ``app.services.requests.validation`` (one place, also used to check a
stored request again); this form only carries the fields, the CSRF token and two traps
for bots: a honeypot field people never see, and the signed time the form was served.
"""

from __future__ import annotations

import secrets
import time

from flask import current_app, request
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeSerializer
from wtforms import HiddenField, StringField, TextAreaField

from app.services.requests.validation import FIELDS, CleanedSolicitation, clean_solicitation

_SERVED_AT_SALT = "public-form-served-at"
# Up to this many communes for a postal code are offered as radio buttons, more as a list.
COMMUNE_RADIOS_MAX = 10
# Said to a suspected bot, and to the rare person caught by a trap: nothing about which one.
BOT_MESSAGE = "Votre demande n'a pas pu être envoyée. Vérifiez le formulaire puis envoyez-le à nouveau."


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SERVED_AT_SALT)


def sign_served_at(subject_slug: str, now: float | None = None) -> str:
    """The time the form is served, signed (with its subject) so a bot cannot backdate it, and
    a random key of this one copy of the form: a request is stored once per key, so a double
    click, a replayed post or a bot reusing one signed time stores (and sends) nothing more."""
    return _serializer().dumps(
        {"s": subject_slug, "t": time.time() if now is None else now, "k": secrets.token_urlsafe(18)}
    )


def _served(token: str | None, subject_slug: str) -> dict | None:
    try:
        data = _serializer().loads(token or "")
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("s") != subject_slug or not isinstance(data.get("t"), int | float):
        return None
    return data


def seconds_since_served(token: str | None, subject_slug: str, now: float | None = None) -> float | None:
    """How long ago the form carrying ``token`` was served; None when the token is missing,
    forged or made for another subject."""
    data = _served(token, subject_slug)
    return None if data is None else (time.time() if now is None else now) - data["t"]


def submission_key(token: str | None, subject_slug: str) -> str | None:
    """The one-time key of the copy of the form carrying ``token`` (None for a form without one)."""
    data = _served(token, subject_slug)
    key = data.get("k") if data else None
    return key if isinstance(key, str) and 0 < len(key) <= 40 else None


def embedded_post_allowed(token: str | None, form_key: str, now: float | None = None) -> bool:
    """The CSRF check of a form shown in a partner's frame, which cannot rely on a cookie.

    In a frame on a partner's site our cookies are third-party: browsers that block those
    (Safari, Firefox, Chrome's option) would drop the session cookie Flask-WTF keeps its token
    in, and every embedded request would be refused. A forged cross-site post matters when it
    borrows the victim's ambient credentials; the embedded form carries none (no account, no
    session), so two checks that need no cookie are enough to refuse a post not made from our
    own page: the browser's ``Origin`` header (else ``Referer``) must be this site, and the
    form's signed copy (``served_at``, bound to the landing and subject) must be younger than
    ``WTF_CSRF_TIME_LIMIT``. Its one-time key still stores a replayed copy only once.
    """
    own = request.host_url.rstrip("/")
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin.rstrip("/") != own:
            return False
    elif not (request.headers.get("Referer") or "").startswith(own + "/"):
        return False
    elapsed = seconds_since_served(token, form_key, now)
    limit = float(current_app.config.get("WTF_CSRF_TIME_LIMIT") or 3600)
    return elapsed is not None and elapsed <= limit


class SolicitationForm(FlaskForm):
    """Field names are public (partners prefill them in links); values are checked by
    :func:`clean_solicitation`, the service's own validation."""

    full_name = StringField("Prénom et nom")
    email = StringField("Adresse email")
    phone = StringField("Téléphone")
    siret = StringField("Numéro SIRET de l'entreprise")
    postal_code = StringField("Code postal de l'établissement")
    insee_code = StringField("Commune")
    description = TextAreaField("Votre demande")
    # Traps: ``telecopie`` must stay empty (browsers do not autofill fax numbers any more,
    # bots fill every field); ``served_at`` is the signed time the form was served.
    telecopie = StringField("Laissez ce champ vide")
    served_at = HiddenField()

    cleaned: CleanedSolicitation | None = None

    def looks_like_a_bot(self, subject_slug: str) -> bool:
        """A filled honeypot, or a form posted sooner than ``FORM_MIN_SECONDS`` after it was
        served (or with a missing or forged time): nobody types a whole request that fast."""
        if (self.telecopie.data or "").strip():
            return True
        elapsed = seconds_since_served(self.served_at.data, subject_slug)
        return elapsed is None or elapsed < float(current_app.config.get("FORM_MIN_SECONDS", 3))

    def validate(self, extra_validators=None) -> bool:
        """CSRF through Flask-WTF, then every business rule at once."""
        csrf_ok = super().validate(extra_validators)
        self.cleaned = clean_solicitation(
            {name: self[name].data for name in FIELDS},
            check_deliverability=bool(current_app.config.get("EMAIL_CHECK_DELIVERABILITY", False)),
        )
        for name, message in self.cleaned.errors.items():
            self[name].errors = [*self[name].errors, message]
        return csrf_ok and self.cleaned.is_valid

    def error_items(self) -> list[tuple[str, str]]:
        """``(anchor id, message)`` of every error, in the order of the page, for the summary."""
        items = []
        for name in FIELDS:
            for message in self[name].errors:
                items.append((self.anchor(name), message))
        return items

    @property
    def commune_choice(self) -> str | None:
        """How to ask for the commune: ``"radios"``, ``"select"``, or None when there is nothing
        to choose (postal code unknown yet, or one commune only)."""
        if self.cleaned is None or not self.cleaned.communes:
            return None
        if not (self.cleaned.needs_commune_choice or self.insee_code.errors):
            return None
        return "radios" if len(self.cleaned.communes) <= COMMUNE_RADIOS_MAX else "select"

    @property
    def resolved_insee_code(self) -> str:
        """The commune to carry in a hidden field when none is asked for: the postal code's only
        commune once known, else nothing (a stale choice must not outlive its postal code)."""
        if self.cleaned is None:
            return ""
        return self.cleaned.values.get("insee_code", "")

    def anchor(self, name: str) -> str:
        """The id the error summary links to: the commune choice's first option when it is shown."""
        if name == "insee_code" and self.commune_choice == "radios":
            return "insee_code-0"
        return name
