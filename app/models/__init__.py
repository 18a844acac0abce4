"""Every model, importable from one place (Alembic and Flask-Admin need them all loaded)."""

from app.models.addressbook import (
    ZONE_KIND_LABELS,
    ZONE_KINDS,
    AddressbookUpload,
    Antenne,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Zone,
)
from app.models.audit import AuditEvent
from app.models.catalog import Subject, Theme
from app.models.geo import Commune, CommunePostalCode, Departement, Epci, Region
from app.models.users import ROLE_LABELS, ROLES, User

__all__ = [
    "ROLES",
    "ROLE_LABELS",
    "ZONE_KINDS",
    "ZONE_KIND_LABELS",
    "AddressbookUpload",
    "Antenne",
    "AuditEvent",
    "Commune",
    "CommunePostalCode",
    "Departement",
    "Epci",
    "Expert",
    "ExpertSubject",
    "Institution",
    "InstitutionSubject",
    "Region",
    "Subject",
    "Theme",
    "User",
    "Zone",
]
