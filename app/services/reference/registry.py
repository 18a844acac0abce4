"""Company registries (INSEE/SIRENE through the API Recherche d'entreprises) behind an adapter.

The registry cannot be reached from tests or a laptop without network, so the embedded
default and the tests use :class:`FakeRegistry`; production sets ``COMPANY_REGISTRY`` to
``recherche-entreprises``. The form never depends on the registry answering: a SIRET the
registry does not know (or a registry that is down) is still accepted, and staff see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import current_app


@dataclass(frozen=True)
class CompanyInfo:
    siret: str
    siren: str
    name: str
    naf_code: str | None = None
    legal_form: str | None = None
    commune_code: str | None = None
    postal_code: str | None = None
    active: bool = True


class Registry(Protocol):
    def lookup(self, siret: str) -> CompanyInfo | None:
        """The établissement of ``siret``; None when unknown or when the registry fails."""


class FakeRegistry:
    """A deterministic stand-in: every well-formed SIRET is a company named after it."""

    def lookup(self, siret: str) -> CompanyInfo | None:
        if not (siret.isdigit() and len(siret) == 14):
            return None
        return CompanyInfo(siret=siret, siren=siret[:9], name=f"Entreprise {siret[:9]}")


def get_registry() -> Registry:
    name = current_app.config.get("COMPANY_REGISTRY", "fake")
    if name == "fake":
        return FakeRegistry()
    if name == "recherche-entreprises":
        from app.services.reference.registry_client import RechercheEntreprisesClient

        return RechercheEntreprisesClient(
            base_url=current_app.config.get("RECHERCHE_ENTREPRISES_URL", "https://recherche-entreprises.api.gouv.fr"),
            timeout=float(current_app.config.get("REGISTRY_TIMEOUT_SECONDS", 3)),
        )
    raise RuntimeError(f"COMPANY_REGISTRY inconnu : {name!r}")
