"""Landings: which subjects a partner's page offers, and who may embed it.

An origin is compared exactly by browsers in ``frame-ancestors``: it is kept normalised
(scheme, lower-case host, port only when not the scheme's default, no path), so what staff type
(« https://www.Example.fr/aides ») becomes what the header needs (« https://www.example.fr »).
Only ``https`` origins are accepted, and ``http`` for a local host (tests, a demo on a laptop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Landing, LandingSubject, Subject, Theme
from app.models.base import utcnow
from app.services.errors import ServiceError

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ORIGIN_URL_MAX = 1000
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """One origin as ``frame-ancestors`` compares it, or ``ServiceError`` in French."""
    raw = (text or "").strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ServiceError(f"« {raw} » n'est pas une adresse de site valide.") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        raise ServiceError(f"« {raw} » n'est pas une origine : écrivez-la comme https://www.exemple.fr.")
    if not re.fullmatch(r"[a-z0-9.\-]+|\[[0-9a-f:]+\]", host) or host.startswith(".") or ".." in host:
        raise ServiceError(f"« {raw} » : le nom de domaine n'est pas valide.")
    if parts.scheme == "http" and host not in _LOCAL_HOSTS:
        raise ServiceError(f"« {raw} » : seules les origines https sont acceptées (http pour un poste local).")
    if host.startswith("[") and host not in _LOCAL_HOSTS:
        raise ServiceError(f"« {raw} » : une adresse IP n'est pas une origine de site partenaire.")
    netloc = host if port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def parse_origins(text: str) -> list[str]:
    """The origins typed one per line (or separated by spaces or commas), normalised, without
    duplicates; every wrong one is named in one French message."""
    origins: list[str] = []
    errors: list[str] = []
    for item in re.split(r"[\s,;]+", text or ""):
        if not item:
            continue
        try:
            origin = normalize_origin(item)
        except ServiceError as error:
            errors.append(str(error))
            continue
        if origin not in origins:
            origins.append(origin)
    if errors:
        raise ServiceError(" ".join(errors))
    return origins


def clean_origin_url(value: str | None) -> str | None:
    """The embedding page's address, kept as provenance (never refused: a partner's page is not
    the business's fault): an http(s) URL without its credentials, cut to the column."""
    text = "".join(c for c in (value or "") if c.isprintable()).strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password:
        text = text.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
    return text[:ORIGIN_URL_MAX]


def check_slug(slug: str) -> str:
    value = (slug or "").strip().lower()
    if not SLUG_RE.fullmatch(value) or len(value) > 80:
        raise ServiceError(
            "L'identifiant d'adresse ne prend que des minuscules, des chiffres et des tirets (80 au plus)."
        )
    return value


# ---------------------------------------------------------------- what a landing shows


def find_landing(slug: str) -> Landing | None:
    """The landing and its partner and subjects (three queries whatever its size)."""
    if not slug or len(slug) > 80:
        return None
    return db.session.scalar(
        select(Landing)
        .where(Landing.slug == slug)
        .options(
            selectinload(Landing.partner),
            selectinload(Landing.subjects).selectinload(LandingSubject.subject).selectinload(Subject.theme),
        )
    )


@dataclass
class ThemeGroup:
    theme: Theme
    items: list[LandingSubject]


def offered_items(landing: Landing) -> list[LandingSubject]:
    """The landing's subjects still offered by the catalog, in the landing's order."""
    return [item for item in landing.subjects if item.subject.is_offered]


def grouped(items: list[LandingSubject]) -> list[ThemeGroup]:
    """The items by theme, themes in the catalog's order."""
    groups: dict[int, ThemeGroup] = {}
    for item in items:
        theme = item.subject.theme
        groups.setdefault(theme.id, ThemeGroup(theme, [])).items.append(item)
    return sorted(groups.values(), key=lambda g: (g.theme.position, g.theme.label))


def item_for(landing: Landing, subject_slug: str) -> LandingSubject | None:
    """The landing's offered item for a subject, or None when the landing does not offer it."""
    return next((item for item in offered_items(landing) if item.subject.slug == subject_slug), None)


def pause(landing: Landing) -> None:
    if landing.paused_at is None:
        landing.paused_at = utcnow()
    db.session.flush()


def resume(landing: Landing) -> None:
    landing.paused_at = None
    db.session.flush()
