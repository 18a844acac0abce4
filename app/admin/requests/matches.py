"""Following matches: one need sent to one expert."""

from __future__ import annotations

from sqlalchemy.orm import selectinload

from app.admin.base import ReadOnlyModelView
from app.admin.requests.common import _link, satisfaction_text, zone_entry
from app.admin.requests.filters import match_filters
from app.admin.requests.search import FullTextSearchMixin
from app.models import (
    MATCH_STATUS_LABELS,
    Antenne,
    Expert,
    Facility,
    Match,
    Need,
)


class MatchView(FullTextSearchMixin, ReadOnlyModelView):
    """One need sent to one expert: read-only, the expert changes it from their link."""

    referent_access = "read"
    column_list = [
        "created_at",
        "need",
        "subject",
        "company",
        "expert",
        "institution",
        "status",
        "zone",
        "taken_care_at",
        "closed_at",
    ]
    column_export_list = [*column_list, "satisfaction"]
    column_details_list = [
        "created_at",
        "need",
        "subject",
        "company",
        "commune",
        "expert",
        "expert_email",
        "antenne",
        "institution",
        "status",
        "zone",
        "taken_care_at",
        "closed_at",
    ]
    column_labels = {
        "created_at": "Date",
        "need": "Besoin",
        "satisfaction": "Avis de l'entreprise",
        "subject": "Sujet du besoin",
        "company": "Entreprise",
        "commune": "Commune",
        "expert": "Expert",
        "expert.full_name": "Expert",
        "expert.email": "Email de l'expert",
        "expert_email": "Email de l'expert",
        "antenne": "Antenne",
        "institution": "Institution",
        "status": "Statut",
        "zone": "Entrée de zone",
        "taken_care_at": "Prise en charge le",
        "closed_at": "Clôturée le",
    }
    # The row's link to its need is for the screen; the CSV keeps its columns.
    column_export_exclude_list = ["need"]
    column_choices = {"status": list(MATCH_STATUS_LABELS.items())}
    column_sortable_list = ["created_at", "status", "taken_care_at", "closed_at"]
    column_searchable_list = ["expert.full_name", "expert.email"]
    column_filters = match_filters()
    export_kind = "matches"
    column_default_sort = ("created_at", True)
    column_formatters = {
        "satisfaction": lambda v, c, m, n: satisfaction_text(m.need.satisfaction),
        "subject": lambda v, c, m, n: m.need.subject.label,
        "company": lambda v, c, m, n: m.need.facility.company.name,
        "commune": lambda v, c, m, n: str(m.need.facility.commune),
        "expert": lambda v, c, m, n: m.expert.full_name,
        "expert_email": lambda v, c, m, n: m.expert.email,
        "antenne": lambda v, c, m, n: m.expert.antenne.name,
        "institution": lambda v, c, m, n: m.expert.antenne.institution.name,
        "zone": lambda v, c, m, n: zone_entry(m),
        "need": lambda v, c, m, n: _link("need.details_view", m.need_id, f"Besoin #{m.need_id}"),
    }
    column_formatters_detail = {
        **column_formatters,
        "need": lambda v, c, m, n: _link("need.details_view", m.need_id, str(m.need)),
    }
    list_loader_options = (
        lambda: selectinload(Match.need).selectinload(Need.subject),
        lambda: selectinload(Match.need).selectinload(Need.satisfaction),
        lambda: selectinload(Match.need).selectinload(Need.facility).selectinload(Facility.company),
        lambda: selectinload(Match.expert).selectinload(Expert.antenne).selectinload(Antenne.institution),
    )
