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
from app.models.discussion import COMMENT_SOURCES, INBOUND_STATES, Comment, InboundMessage
from app.models.geo import Commune, CommunePostalCode, Departement, Epci, Region
from app.models.outbox import EMAIL_STATE_LABELS, EMAIL_STATES, OutboundEmail
from app.models.requests import (
    MATCH_STATUS_LABELS,
    MATCH_STATUSES,
    NEED_STATUS_LABELS,
    NEED_STATUSES,
    SOLICITATION_STATUS_LABELS,
    SOLICITATION_STATUSES,
    Company,
    Contact,
    Facility,
    Match,
    Need,
    Solicitation,
)
from app.models.users import ROLE_LABELS, ROLES, User

__all__ = [
    "COMMENT_SOURCES",
    "EMAIL_STATES",
    "EMAIL_STATE_LABELS",
    "INBOUND_STATES",
    "MATCH_STATUSES",
    "MATCH_STATUS_LABELS",
    "NEED_STATUSES",
    "NEED_STATUS_LABELS",
    "ROLES",
    "ROLE_LABELS",
    "SOLICITATION_STATUSES",
    "SOLICITATION_STATUS_LABELS",
    "ZONE_KINDS",
    "ZONE_KIND_LABELS",
    "AddressbookUpload",
    "Antenne",
    "AuditEvent",
    "Comment",
    "Commune",
    "CommunePostalCode",
    "Company",
    "Contact",
    "Departement",
    "Epci",
    "Expert",
    "ExpertSubject",
    "Facility",
    "InboundMessage",
    "Institution",
    "InstitutionSubject",
    "Match",
    "Need",
    "OutboundEmail",
    "Region",
    "Solicitation",
    "Subject",
    "Theme",
    "User",
    "Zone",
]
