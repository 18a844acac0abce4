"""The request desk: what the public form received, qualified and sent by staff."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import (
    DateTimeBetweenFilter,
    DateTimeGreaterFilter,
    DateTimeSmallerFilter,
    FilterEqual,
    IntEqualFilter,
)
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy.orm import selectinload

from app import policy
from app.admin.addressbook import subject_options
from app.admin.base import LazyOptions, ReadOnlyModelView
from app.admin.requests.common import _link, notes_summary, notes_text
from app.admin.requests.search import FullTextSearchMixin
from app.models import (
    SOLICITATION_STATUS_LABELS,
    Solicitation,
)
from app.services import desk


def _registry_text(solicitation: Solicitation) -> str:
    data = solicitation.registry_data or {}
    return " ; ".join(f"{key} : {value}" for key, value in data.items() if value not in (None, "", [], {}))


def _flag_badges(flags: list[str]) -> Markup:
    return Markup(" ").join(Markup('<span class="badge badge-warning">{}</span>').format(flag) for flag in flags)


class SolicitationView(FullTextSearchMixin, ReadOnlyModelView):
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
    export_kind = "solicitations"
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
