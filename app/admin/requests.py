"""Back-office views of the requests: solicitations, needs and matches (menu « Demandes »).

Read-mostly, so staff see what came in and where it went; the full moderation desk is a
later issue. The two solicitation actions call the service verbs of
``app/services/solicitations.py`` (imported inside the actions, so this module loads on its
own); every list states its loader options and per-page counts, so a page costs the same
number of queries whatever its length.
"""

from __future__ import annotations

from typing import Any

from flask import flash, has_request_context, redirect, request, url_for
from flask_admin import Admin, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import (
    DateTimeBetweenFilter,
    DateTimeGreaterFilter,
    DateTimeSmallerFilter,
    FilterEqual,
    IntEqualFilter,
)
from flask_admin.model.template import macro
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app import policy
from app.admin.addressbook import institution_options, subject_options
from app.admin.base import InSubqueryFilter, LazyOptions, ReadOnlyModelView, paris_time, shortened
from app.extensions import db
from app.models import (
    MATCH_STATUS_LABELS,
    NEED_STATUS_LABELS,
    SOLICITATION_STATUS_LABELS,
    Antenne,
    Expert,
    Facility,
    Match,
    Need,
    Solicitation,
)
from app.services import desk
from app.services.errors import ServiceError

# The list shows the start of the qualification notes (French sentences written by
# ``services.solicitations``); the details page and the export show them whole.
NOTES_SUMMARY_LENGTH = 120

# A match counts as « positive » when the expert engaged with the business: staff read the
# number to see at a glance whether anyone answered.
POSITIVE_MATCH_STATUSES = ("taking_care", "done")

ZONE_OWNER_LABELS = {"antenne": "zone de l'antenne", "expert": "zone propre de l'expert"}


def notes_text(notes: list[str] | None) -> str:
    return " · ".join(str(note) for note in notes or [])


def notes_summary(notes: list[str] | None) -> str:
    return shortened(notes_text(notes), NOTES_SUMMARY_LENGTH)


def zone_entry(match: Match) -> str:
    """``departement:69, zone de l'antenne``: the entry that made the expert receive the need."""
    if match.zone_owner is None and match.zone is None:
        return "ajouté par l'équipe"
    owner = ZONE_OWNER_LABELS.get(match.zone_owner or "", "")
    return f"{match.zone or ''}, {owner}".strip(", ")


def _link(endpoint: str, ident: int, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url_for(endpoint, id=ident), text)


def _date(value: Any) -> str:
    return paris_time(value)


# ---------------------------------------------------------------- solicitations


def _registry_text(solicitation: Solicitation) -> str:
    data = solicitation.registry_data or {}
    return " ; ".join(f"{key} : {value}" for key, value in data.items() if value not in (None, "", [], {}))


def _flag_badges(flags: list[str]) -> Markup:
    return Markup(" ").join(Markup('<span class="badge badge-warning">{}</span>').format(flag) for flag in flags)


class SolicitationView(ReadOnlyModelView):
    """What the public form received; staff route or abandon what automation left for them.

    The desk's tabs (``?onglet=``, see ``services/desk.py``) select the list: search, filters,
    sorting, paging and the CSV export keep the tab, since Flask-Admin carries unknown URL
    arguments along. « À qualifier » lists the oldest request first; without a tab the list
    shows every request, newest first.
    """

    details_template = "admin/requests_solicitation_details.html"
    list_template = "admin/requests_solicitation_list.html"
    column_list = [
        "created_at",
        "subject",
        "full_name",
        "email",
        "siret",
        "commune",
        "status",
        "qualification_notes",
        "flags",
        "mtm_campaign",
    ]
    column_details_list = [
        "created_at",
        "status",
        "qualification_notes",
        "need",
        "subject",
        "full_name",
        "email",
        "phone",
        "siret",
        "company_name",
        "registry_data",
        "postal_code",
        "commune",
        "description",
        "mtm_campaign",
        "mtm_kwd",
        "mtm_source",
        "processed_at",
        "canceled_at",
    ]
    column_export_list = [
        "created_at",
        "subject",
        "full_name",
        "email",
        "phone",
        "siret",
        "company_name",
        "postal_code",
        "commune",
        "status",
        "qualification_notes",
        "mtm_campaign",
        "mtm_kwd",
        "mtm_source",
        "need",
        "description",
        "flags",
    ]
    column_labels = {
        "created_at": "Date",
        "subject": "Sujet",
        "subject.label": "Sujet",
        "full_name": "Nom",
        "email": "Email",
        "phone": "Téléphone",
        "siret": "SIRET",
        "company_name": "Entreprise",
        "registry_data": "Registre des entreprises",
        "postal_code": "Code postal",
        "commune": "Commune",
        "status": "Statut",
        "qualification_notes": "Points à vérifier",
        "flags": "Signaux",
        "need": "Besoin",
        "description": "Description",
        "mtm_campaign": "Campagne",
        "mtm_kwd": "Mot-clé",
        "mtm_source": "Source",
        "processed_at": "Transmise le",
        "canceled_at": "Abandonnée le",
    }
    column_choices = {"status": list(SOLICITATION_STATUS_LABELS.items())}
    column_sortable_list = ["created_at", ("subject", "subject.label"), "full_name", "email", "siret", "status"]
    column_searchable_list = ["full_name", "email", "siret", "company_name"]
    column_filters = [
        FilterEqual(Solicitation.status, "Statut", options=list(SOLICITATION_STATUS_LABELS.items())),
        IntEqualFilter(Solicitation.subject_id, "Sujet", options=LazyOptions(subject_options)),
        DateTimeGreaterFilter(Solicitation.created_at, "Date"),
        DateTimeSmallerFilter(Solicitation.created_at, "Date"),
        DateTimeBetweenFilter(Solicitation.created_at, "Date"),
    ]
    column_default_sort = ("created_at", True)
    column_formatters = {
        "subject": lambda v, c, m, n: m.subject.label,
        "commune": lambda v, c, m, n: str(m.commune) if m.commune else m.insee_code,
        "qualification_notes": lambda v, c, m, n: notes_summary(m.qualification_notes),
        "flags": lambda v, c, m, n: _flag_badges(getattr(m, "desk_flags", [])),
    }
    column_formatters_detail = {
        **column_formatters,
        "qualification_notes": lambda v, c, m, n: (
            Markup("<br>").join(m.qualification_notes) if m.qualification_notes else "Aucun"
        ),
        "need": lambda v, c, m, n: _link("need.details_view", m.need.id, str(m.need)) if m.need else "Pas encore",
        "registry_data": lambda v, c, m, n: _registry_text(m),
    }
    column_formatters_export = {
        **column_formatters,
        "qualification_notes": lambda v, c, m, n: notes_text(m.qualification_notes),
        "need": lambda v, c, m, n: f"#{m.need.id}" if m.need else "",
        "flags": lambda v, c, m, n: ", ".join(getattr(m, "desk_flags", [])),
    }
    # The need is loaded with the page too: the export names it on every row.
    list_loader_options = (
        lambda: selectinload(Solicitation.subject),
        lambda: selectinload(Solicitation.commune),
        lambda: selectinload(Solicitation.needs),
    )

    def current_tab(self) -> str:
        return desk.tab_slug(request.args.get("onglet") if has_request_context() else None)

    def _in_tab(self, query):
        condition = desk.tab_condition(self.current_tab())
        return query if condition is None else query.filter(condition)

    def get_query(self):
        return self._in_tab(super().get_query())

    def get_count_query(self):
        return self._in_tab(super().get_count_query())

    def _get_default_order(self):
        # The queue is served oldest first; the other tabs show the latest first.
        newest_first = self.current_tab() != "a-qualifier"
        yield Solicitation.created_at, [], newest_first
        yield Solicitation.id, [], newest_first

    def annotate(self, rows: list[Solicitation]) -> None:
        flags = desk.flags_for(rows)
        for row in rows:
            row.desk_flags = flags.get(row.id, [])

    def desk_tabs(self) -> list[dict[str, Any]]:
        """The tabs above the list, with their counts (one query) and links keeping the
        current search and filters."""
        counts = desk.tab_counts(lambda query: policy.scope_query(current_user, Solicitation, query))
        current = self.current_tab()
        args = {key: value for key, value in request.args.items() if key not in ("page", "onglet")}
        return [
            {
                "label": tab.label,
                "count": counts[tab.slug],
                "url": self.get_url(".index_view", onglet=tab.slug, **args),
                "active": tab.slug == current,
            }
            for tab in desk.TABS
        ]

    # Flask-Admin lists actions in the alphabetical order of their methods: route, cancel, spam.
    @action(
        "transmettre",
        "Transmettre aux experts",
        "Transmettre les demandes sélectionnées aux experts de leur territoire ?",
    )
    def action_route(self, ids: list[str]) -> None:
        from app.services.solicitations import route_solicitation

        user_id = current_user.id
        self.run_action(
            ids,
            lambda solicitation: route_solicitation(solicitation, by_user_id=user_id),
            "{count} demande(s) transmise(s) aux experts.",
        )

    @action("abandonner", "Abandonner", "Abandonner les demandes sélectionnées ? Elles ne seront pas transmises.")
    def action_set_canceled(self, ids: list[str]) -> None:
        from app.services.solicitations import cancel_solicitation

        self.run_action(ids, cancel_solicitation, "{count} demande(s) abandonnée(s).")

    @action(
        "spam",
        "Abandonner comme spam",
        "Abandonner les demandes sélectionnées comme spam ? Les prochaines demandes de ces adresses attendront l'équipe.",
    )
    def action_set_spam(self, ids: list[str]) -> None:
        from app.services.solicitations import SPAM_REASON, cancel_solicitation

        self.run_action(
            ids,
            lambda solicitation: cancel_solicitation(solicitation, reason=SPAM_REASON),
            "{count} demande(s) abandonnée(s) comme spam.",
        )


# ---------------------------------------------------------------- needs


class NeedView(ReadOnlyModelView):
    """One subject for one establishment, and how its experts answered."""

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
    column_filters = [
        FilterEqual(Need.status, "Statut", options=list(NEED_STATUS_LABELS.items())),
        IntEqualFilter(Need.subject_id, "Sujet", options=LazyOptions(subject_options)),
    ]
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


# ---------------------------------------------------------------- matches


class MatchView(ReadOnlyModelView):
    """One need sent to one expert: read-only, the expert changes it from their link."""

    column_list = [
        "created_at",
        "subject",
        "company",
        "expert",
        "institution",
        "status",
        "zone",
        "taken_care_at",
        "closed_at",
    ]
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
    column_choices = {"status": list(MATCH_STATUS_LABELS.items())}
    column_sortable_list = ["created_at", "status", "taken_care_at", "closed_at"]
    column_searchable_list = ["expert.full_name", "expert.email"]
    column_filters = [
        FilterEqual(Match.status, "Statut", options=list(MATCH_STATUS_LABELS.items())),
        InSubqueryFilter(
            Match.expert_id,
            "Institution",
            lambda ident: select(Expert.id).join(Antenne).where(Antenne.institution_id == ident),
            options=LazyOptions(institution_options),
        ),
    ]
    column_default_sort = ("created_at", True)
    column_formatters = {
        "subject": lambda v, c, m, n: m.need.subject.label,
        "company": lambda v, c, m, n: m.need.facility.company.name,
        "commune": lambda v, c, m, n: str(m.need.facility.commune),
        "expert": lambda v, c, m, n: m.expert.full_name,
        "expert_email": lambda v, c, m, n: m.expert.email,
        "antenne": lambda v, c, m, n: m.expert.antenne.name,
        "institution": lambda v, c, m, n: m.expert.antenne.institution.name,
        "zone": lambda v, c, m, n: zone_entry(m),
    }
    column_formatters_detail = {
        **column_formatters,
        "need": lambda v, c, m, n: _link("need.details_view", m.need_id, str(m.need)),
    }
    list_loader_options = (
        lambda: selectinload(Match.need).selectinload(Need.subject),
        lambda: selectinload(Match.need).selectinload(Need.facility).selectinload(Facility.company),
        lambda: selectinload(Match.expert).selectinload(Expert.antenne).selectinload(Antenne.institution),
    )


def register(admin: Admin) -> None:
    category = "Demandes"
    admin.add_view(
        SolicitationView(Solicitation, db, name="Sollicitations", category=category, endpoint="solicitation")
    )
    admin.add_view(NeedView(Need, db, name="Besoins", category=category, endpoint="need"))
    admin.add_view(MatchView(Match, db, name="Mises en relation", category=category, endpoint="match"))
