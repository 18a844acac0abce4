"""Following needs: one subject for one establishment, and how its experts answered."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.model.template import macro
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.admin.base import ReadOnlyModelView
from app.admin.requests.common import POSITIVE_MATCH_STATUSES, _date, _link, zone_entry
from app.admin.requests.filters import need_filters
from app.admin.requests.search import FullTextSearchMixin
from app.extensions import db
from app.models import (
    MATCH_STATUS_LABELS,
    NEED_STATUS_LABELS,
    Antenne,
    Expert,
    Facility,
    Match,
    Need,
)
from app.services.errors import ServiceError


class NeedView(FullTextSearchMixin, ReadOnlyModelView):
    """One subject for one establishment, and how its experts answered."""

    referent_access = "read"
    details_template = "admin/requests_need_details.html"
    column_list = ["created_at", "subject", "company", "commune", "status", "match_count", "positive_count"]
    column_details_list = [
        "created_at",
        "status",
        "solicitation",
        "subject",
        "company",
        "siret",
        "commune",
        "contact",
        "contact_email",
        "contact_phone",
        "description",
        "matches",
    ]
    column_export_list = [
        "created_at",
        "subject",
        "company",
        "siret",
        "commune",
        "status",
        "match_count",
        "positive_count",
        "solicitation",
    ]
    column_labels = {
        "created_at": "Date",
        "subject": "Sujet",
        "subject.label": "Sujet",
        "company": "Entreprise",
        "siret": "SIRET",
        "commune": "Commune",
        "status": "Statut",
        "match_count": "Mises en relation",
        "positive_count": "Dont positives",
        "solicitation": "Sollicitation",
        "contact": "Contact",
        "contact_email": "Email du contact",
        "contact_phone": "Téléphone du contact",
        "description": "Description",
        "matches": "Mises en relation",
        "facility.company.name": "Entreprise",
        "facility.siret": "SIRET",
        "contact.full_name": "Contact",
        "contact.email": "Email du contact",
    }
    column_choices = {"status": list(NEED_STATUS_LABELS.items())}
    column_sortable_list = ["created_at", ("subject", "subject.label"), "status"]
    column_searchable_list = ["facility.company.name", "facility.siret", "contact.full_name", "contact.email"]
    column_filters = need_filters()
    export_kind = "needs"
    column_default_sort = ("created_at", True)
    column_formatters = {
        "subject": lambda v, c, m, n: m.subject.label,
        "company": lambda v, c, m, n: m.facility.company.name,
        "siret": lambda v, c, m, n: m.facility.siret,
        "commune": lambda v, c, m, n: str(m.facility.commune),
        "match_count": lambda v, c, m, n: m.match_count if hasattr(m, "match_count") else len(m.matches),
        "positive_count": lambda v, c, m, n: (
            m.positive_count
            if hasattr(m, "positive_count")
            else sum(1 for match in m.matches if match.status in POSITIVE_MATCH_STATUSES)
        ),
        "solicitation": lambda v, c, m, n: f"#{m.solicitation_id}" if m.solicitation_id else "",
        "contact": lambda v, c, m, n: m.contact.full_name,
        "contact_email": lambda v, c, m, n: m.contact.email,
        "contact_phone": lambda v, c, m, n: m.contact.phone,
    }
    column_formatters_detail = {
        **column_formatters,
        "solicitation": lambda v, c, m, n: (
            _link("solicitation.details_view", m.solicitation_id, str(m.solicitation))
            if m.solicitation_id
            else "Créé par l'équipe"
        ),
        "matches": macro("render_matches"),
    }
    list_loader_options = (
        lambda: selectinload(Need.subject),
        lambda: selectinload(Need.facility).selectinload(Facility.company),
        lambda: selectinload(Need.facility).selectinload(Facility.commune),
    )

    def annotate(self, rows: list[Need]) -> None:
        counts = {
            need_id: (total, positive)
            for need_id, total, positive in db.session.execute(
                select(
                    Match.need_id,
                    func.count(Match.id),
                    func.count(Match.id).filter(Match.status.in_(POSITIVE_MATCH_STATUSES)),
                )
                .where(Match.need_id.in_([r.id for r in rows]))
                .group_by(Match.need_id)
            )
        }
        for row in rows:
            row.match_count, row.positive_count = counts.get(row.id, (0, 0))

    def match_rows(self, need: Need) -> list[dict[str, Any]]:
        """The matches of the details page, each as the strings staff read (one query for all)."""
        matches = db.session.scalars(
            select(Match)
            .where(Match.need_id == need.id)
            .options(selectinload(Match.expert).selectinload(Expert.antenne).selectinload(Antenne.institution))
            .order_by(Match.id)
        )
        return [
            {
                "id": match.id,
                "expert": match.expert.full_name,
                "email": match.expert.email,
                "antenne": match.expert.antenne.name,
                "institution": match.expert.antenne.institution.name,
                "status": MATCH_STATUS_LABELS.get(match.status, match.status),
                "zone": zone_entry(match),
                "taken_care_at": _date(match.taken_care_at),
                "closed_at": _date(match.closed_at),
            }
            for match in matches
        ]

    def comments(self, need: Need) -> list:
        """The need's thread, authors loaded (the details page shows it under the matches)."""
        from app.services.discussion import thread

        return thread(need)

    @expose("/commenter/", methods=("POST",))
    def comment_view(self):
        """Staff write on the thread; the service checks they are staff (a referent is refused)."""
        from app.services.discussion import post_comment

        need = self.get_one(request.form.get("id", ""))
        body = request.form.get("body", "")
        try:
            post_comment(need, body=body, user=current_user._get_current_object(), source="admin")
        except ServiceError as error:
            db.session.rollback()
            flash(f"Message non envoyé : {error}", "error")
            return redirect(url_for(".details_view", id=need.id, _anchor="discussion"), 303)
        flash("Message envoyé sur la discussion.", "success")
        return redirect(url_for(".details_view", id=need.id, _anchor="discussion"), 303)
