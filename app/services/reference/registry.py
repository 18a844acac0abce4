"""Company registries (INSEE/SIRENE through the API Recherche d'entreprises) behind an adapter.

The registry cannot be reached from tests or a laptop without network, so the embedded
default and the tests use :class:`FakeRegistry`; production sets ``COMPANY_REGISTRY`` to
``recherche-entreprises``. The form never depends on the registry answering: a SIRET the
registry does not know (or a registry that is down) is still accepted, and staff see it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from flask import current_app

# INSEE's « tranche d'effectif salarié » code when the registry gives none.
UNKNOWN_HEADCOUNT = "NN"


@dataclass(frozen=True)
class CompanyInfo:
    """What routing and people need to know of a company, as the registry gives it.

    ``headcount_code`` is INSEE's bracket code (``UNKNOWN_HEADCOUNT`` when not given),
    ``created_on`` an ISO date, ``legal_form`` the 4-digit « catégorie juridique »,
    ``activity_nature`` « artisanale », « commerciale », « libérale »… or None when the
    registry does not say (routing then says « non évalué » rather than guess)."""

    siret: str
    siren: str
    name: str
    naf_code: str | None = None
    legal_form: str | None = None
    commune_code: str | None = None
    postal_code: str | None = None
    active: bool = True
    headcount_code: str = UNKNOWN_HEADCOUNT
    created_on: str | None = None
    activity_nature: str | None = None


class Registry(Protocol):
    def lookup(self, siret: str) -> CompanyInfo | None:
        """The établissement of ``siret``; None when unknown or when the registry fails."""


# The fake's companies: (NAF code, nature of activity) chosen by the SIREN's last digit, so the
# demo and the tests can show routing filters on real-looking facts (a bakery and an
# electrician are artisans, a grocery and a restaurant traders, an accountant a liberal
# profession; software and industry carry no nature, as the registry often does not say).
_FAKE_ACTIVITIES = (
    ("10.71C", "artisanale"),
    ("47.11Z", "commerciale"),
    ("43.21A", "artisanale"),
    ("62.01Z", None),
    ("25.62B", None),
    ("56.10A", "commerciale"),
    ("69.20Z", "libérale"),
    ("96.02A", "artisanale"),
    ("47.24Z", "commerciale"),
    ("33.12Z", None),
)
_FAKE_HEADCOUNTS = ("NN", "00", "01", "02", "03", "11", "12", "21", "22", "31")
_FAKE_LEGAL_FORMS = ("5499", "5710", "1000", "5720", "5498")


class FakeRegistry:
    """A deterministic stand-in: every well-formed SIRET is a company named after it, with
    facts drawn from its digits (the same SIRET always gives the same company)."""

    def lookup(self, siret: str) -> CompanyInfo | None:
        if not (siret.isdigit() and len(siret) == 14):
            return None
        siren = siret[:9]
        naf_code, nature = _FAKE_ACTIVITIES[int(siren[8])]
        return CompanyInfo(
            siret=siret,
            siren=siren,
            name=f"Entreprise {siren}",
            naf_code=naf_code,
            legal_form=_FAKE_LEGAL_FORMS[int(siren[7]) % len(_FAKE_LEGAL_FORMS)],
            headcount_code=_FAKE_HEADCOUNTS[int(siren[6])],
            created_on=f"{1990 + int(siren[:3]) % 35}-{1 + int(siren[3]) % 12:02d}-01",
            activity_nature=nature,
        )


def lookup_company(siret: str) -> CompanyInfo | None:
    """The registry's answer, or None: a failing registry must never lose a request."""
    try:
        return get_registry().lookup(siret)
    except Exception:
        log.warning("registre des entreprises indisponible pour le SIRET %s", siret, exc_info=True)
        return None


def get_registry() -> Registry:
    name = current_app.config.get("COMPANY_REGISTRY", "fake")
    if name == "fake":
        return FakeRegistry()
    if name == "recherche-entreprises":
        return RechercheEntreprisesClient(
            base_url=current_app.config.get("RECHERCHE_ENTREPRISES_URL", "https://recherche-entreprises.api.gouv.fr"),
            timeout=float(current_app.config.get("REGISTRY_TIMEOUT_SECONDS", 3)),
        )
    raise RuntimeError(f"COMPANY_REGISTRY inconnu : {name!r}")


# ---------------------------------------------------------------- the API Recherche d'entreprises

# The API Recherche d'entreprises (recherche-entreprises.api.gouv.fr) as a company registry.
#
# Only used to enrich a request (company name, NAF code, legal form, commune): the form never
# waits on it to accept a request, so every failure — network, timeout, HTTP error, rate limit,
# malformed JSON, a SIRET the API does not know — is a logged warning and ``None``.
#
# A search by SIRET answers companies (unités légales); the établissement asked for is in
# ``matching_etablissements`` (or is the ``siege``). The API can also answer a near match for
# an unknown number, so the SIRET is checked against what comes back.

log = logging.getLogger(__name__)

USER_AGENT = "place-des-entreprises (+https://place-des-entreprises.beta.gouv.fr)"


class RechercheEntreprisesClient:
    """``lookup(siret)`` against ``GET {base_url}/search?q=<siret>``.

    ``transport`` (an ``httpx`` transport, e.g. ``MockTransport`` in tests) or a ready
    ``client`` can be injected; otherwise each lookup opens and closes its own client, so
    no connection outlives the request that needed it.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 3.0,
        *,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport
        self.client = client

    def lookup(self, siret: str) -> CompanyInfo | None:
        if not (isinstance(siret, str) and len(siret) == 14 and siret.isascii() and siret.isdigit()):
            return None
        try:
            payload = self._search(siret)
        except (httpx.HTTPError, ValueError) as error:
            log.warning("Recherche d'entreprises : échec pour le SIRET %s (%s)", siret, error)
            return None
        try:
            return _company_info(payload, siret)
        except (AttributeError, KeyError, TypeError) as error:
            log.warning("Recherche d'entreprises : réponse inattendue pour le SIRET %s (%r)", siret, error)
            return None

    def _search(self, siret: str) -> Any:
        params = {"q": siret, "page": 1, "per_page": 5}
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.client is not None:
            response = self.client.get(f"{self.base_url}/search", params=params, headers=headers, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        with httpx.Client(transport=self.transport, timeout=self.timeout, headers=headers) as client:
            response = client.get(f"{self.base_url}/search", params=params)
            response.raise_for_status()
            return response.json()


def _text(value: Any) -> str | None:
    """A non-empty string, or None: the API writes missing values as null or ""."""
    if value is None:
        return None
    return str(value).strip() or None


def _company_info(payload: Any, siret: str) -> CompanyInfo | None:
    """The établissement ``siret`` in a search answer, or None when the answer does not hold it."""
    siren = siret[:9]
    for company in payload.get("results") or []:
        if company.get("siren") != siren:
            continue
        candidates = [*(company.get("matching_etablissements") or []), company.get("siege") or {}]
        etablissement = next((e for e in candidates if e.get("siret") == siret), None)
        if etablissement is None:
            continue
        name = _text(company.get("nom_complet")) or _text(company.get("nom_raison_sociale")) or f"SIREN {siren}"
        # The établissement's own facts first, the company's otherwise.
        headcount = _text(etablissement.get("tranche_effectif_salarie")) or _text(
            company.get("tranche_effectif_salarie")
        )
        created = _text(etablissement.get("date_creation")) or _text(company.get("date_creation"))
        # An établissement registered with the chambre de métiers carries its trade's code:
        # an artisan. The API says nothing of the other natures, which stay unknown.
        craft = _text(etablissement.get("activite_principale_registre_metier")) or _text(
            company.get("activite_principale_registre_metier")
        )
        return CompanyInfo(
            siret=siret,
            siren=siren,
            name=name,
            naf_code=_text(etablissement.get("activite_principale")) or _text(company.get("activite_principale")),
            legal_form=_text(company.get("nature_juridique")),
            commune_code=_text(etablissement.get("commune")),
            postal_code=_text(etablissement.get("code_postal")),
            active=etablissement.get("etat_administratif", "A") == "A",
            headcount_code=headcount or UNKNOWN_HEADCOUNT,
            created_on=created,
            activity_nature="artisanale" if craft else None,
        )
    return None


# ---------------------------------------------------------------- the facts, as people read them

# INSEE's « tranche d'effectif salarié » codes: the words, and the bounds routing compares.
HEADCOUNT_BRACKETS: dict[str, tuple[str, int | None, int | None]] = {
    "NN": ("effectif inconnu", None, None),
    "00": ("0 salarié", 0, 0),
    "01": ("1 ou 2 salariés", 1, 2),
    "02": ("3 à 5 salariés", 3, 5),
    "03": ("6 à 9 salariés", 6, 9),
    "11": ("10 à 19 salariés", 10, 19),
    "12": ("20 à 49 salariés", 20, 49),
    "21": ("50 à 99 salariés", 50, 99),
    "22": ("100 à 199 salariés", 100, 199),
    "31": ("200 à 249 salariés", 200, 249),
    "32": ("250 à 499 salariés", 250, 499),
    "41": ("500 à 999 salariés", 500, 999),
    "42": ("1 000 à 1 999 salariés", 1000, 1999),
    "51": ("2 000 à 4 999 salariés", 2000, 4999),
    "52": ("5 000 à 9 999 salariés", 5000, 9999),
    "53": ("10 000 salariés et plus", 10000, None),
}


def headcount_text(code: str | None) -> str:
    if code is None:
        return "non renseigné"
    return HEADCOUNT_BRACKETS.get(code, (f"code {code}", None, None))[0]


def company_facts(facility: Any) -> list[tuple[str, str]]:
    """The registry's facts of an établissement, as staff, experts and exports show them (in
    this order); a fact the registry did not give says so rather than disappearing."""
    unknown = "non renseignée"
    created = facility.created_on.strftime("%d/%m/%Y") if facility.created_on else unknown
    return [
        ("Effectif", headcount_text(facility.headcount_code)),
        ("Création", created),
        ("Activité principale (NAF)", facility.naf_code or unknown),
        ("Forme juridique", facility.company.legal_form or unknown),
        ("Nature d'activité", facility.activity_nature or unknown),
    ]
