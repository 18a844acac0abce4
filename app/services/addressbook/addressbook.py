"""The address book's verbs: zones, soft deletion and restoration of institutions, antennes and
experts, and the helpers the CSV import shares with them (``importer``).

A deleted person's personal data is blanked and their history stays; routing, lists and
coverage ignore what is deleted.
"""

from __future__ import annotations

import re
import unicodedata

from app.extensions import db
from app.models import Antenne, Expert, Institution, Zone
from app.models.base import utcnow
from app.services.errors import ServiceError
from app.services.reference import geo

DELETED_EXPERT_NAME = "Expert supprimé"


# ---------------------------------------------------------------- small helpers


_TRANSLITERATIONS = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})


def slugify(text: str, max_length: int = 200) -> str:
    """ASCII, lowercase, hyphen-separated: « Chambre de Métiers d'Île-de-France » → chambre-de-metiers-d-ile-de-france."""
    text = unicodedata.normalize("NFKD", (text or "").translate(_TRANSLITERATIONS))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:max_length].rstrip("-")


def zone_state(owner: Antenne | Expert) -> tuple[bool, frozenset[tuple[str, str]]]:
    return owner.national, frozenset((z.kind, z.code) for z in owner.zones)


def spec_state(spec: geo.ZoneSpec) -> tuple[bool, frozenset[tuple[str, str]]]:
    return spec.national, frozenset(spec.references)


def zone_text(state: tuple[bool, frozenset[tuple[str, str]]]) -> str:
    national, refs = state
    if national:
        return geo.NATIONAL
    return " ".join(f"{k}:{c}" for k, c in sorted(refs)) or "aucune"


def replace_zone(owner: Antenne | Expert, spec: geo.ZoneSpec) -> None:
    """Make the owner's zone exactly ``spec``, keeping rows that stay (no needless audit noise)."""
    wanted = list(spec.references)
    owner.national = spec.national
    for zone in list(owner.zones):
        if (zone.kind, zone.code) not in wanted:
            owner.zones.remove(zone)
    present = {(z.kind, z.code) for z in owner.zones}
    for kind, code in wanted:
        if (kind, code) not in present:
            owner.zones.append(Zone(kind=kind, code=code))


# ---------------------------------------------------------------- zones, deletion, restoration


def set_zone(owner: Antenne | Expert, text: str | None) -> None:
    """Replace an antenne's zone or an expert's own zone from its text form (``national`` or
    space-separated ``kind:code``); empty text clears it (for an expert: back to its antenne's)."""
    spec = geo.parse_zone(text)
    unknown = geo.unknown_references(spec.references) if spec.references else []
    if unknown:
        raise ServiceError(f"Territoire(s) inconnu(s) : {', '.join(unknown)}.")
    if zone_state(owner) != spec_state(spec):
        replace_zone(owner, spec)
    db.session.flush()


def delete_expert(expert: Expert) -> None:
    """Soft delete: past matches keep the row, the personal data goes, the email slot is freed."""
    if expert.deleted_at is not None:
        return
    expert.deleted_at = utcnow()
    expert.full_name = DELETED_EXPERT_NAME
    expert.email = None
    expert.phone = None
    expert.job_title = None
    db.session.flush()


def delete_antenne(antenne: Antenne) -> None:
    """Hide the antenne from routing; its experts stay as they are, to come back with it."""
    if antenne.deleted_at is None:
        antenne.deleted_at = utcnow()
        db.session.flush()


def delete_institution(institution: Institution) -> None:
    """Hide the institution from routing; its antennes and experts stay, to come back with it."""
    if institution.deleted_at is None:
        institution.deleted_at = utcnow()
        db.session.flush()


def restore_antenne(antenne: Antenne) -> None:
    if antenne.institution.deleted_at is not None:
        raise ServiceError(
            f"L'institution « {antenne.institution.name} » est supprimée : restaurez-la avant son antenne."
        )
    if antenne.deleted_at is not None:
        antenne.deleted_at = None
        db.session.flush()


def restore_institution(institution: Institution) -> None:
    if institution.deleted_at is not None:
        institution.deleted_at = None
        db.session.flush()
