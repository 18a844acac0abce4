"""The request desk: what the public form received, qualified and sent by staff.

A request held for review (« À qualifier ») is finished on its details page: correct its
subject, choose the subject(s) and the experts it goes to (routing's suggestions ticked, any
active expert added by hand), send it, or cancel it with a reason that emails the business;
internal notes for the team. Each form POSTs (with its CSRF token) to an endpoint of the view
that calls one service verb, flashes the French outcome and redirects (303) back to the page.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, has_request_context, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import (
    FilterEqual,
    IntEqualFilter,
)
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy.orm import selectinload

from app import policy
from app.admin.addressbook import subject_options
from app.admin.base import ReadOnlyModelView
from app.admin.filters import LazyOptions
from app.admin.requests.common import _link, landing_options, notes_summary, notes_text, provenance_text
from app.admin.requests.filters import (
    ParisDateTimeAfterFilter,
    ParisDateTimeBeforeFilter,
    ParisDateTimeBetweenFilter,
)
from app.admin.requests.search import COUNT_CAP, CappedCount, FullTextSearchMixin
from app.models import (
    CHANNEL_LABELS,
    SOLICITATION_STATUS_LABELS,
    ApiKey,
    Expert,
    Landing,
    Solicitation,
    User,
)
from app.models.requests import SolicitationStatus
from app.services.addressbook import expert_lookup, routing
from app.services.errors import ServiceError
from app.services.requests import desk, qualification
from app.services.requests.cancellation import CANCEL_REASONS, EMAILED_REASONS, SPAM_REASON, cancel_solicitation
from app.services.requests.dispatch import route_solicitation
from app.services.requests.notes import add_note, notes_for
from app.services.transactions import transaction

# The cancel form's choices, in the order staff meet them.
CANCEL_CHOICES = [
    ("out_of_scope", "Hors du champ du service — email à l'entreprise"),
    ("not_a_company", "Pas une entreprise — email à l'entreprise"),
    ("incomplete", "Demande incomplète — email invitant à redéposer"),
    (SPAM_REASON, "Spam — aucun email, l'adresse est bloquée"),
]
# What a failed send carries back to the page so nothing typed is lost (URL arguments).
MAX_CARRIED_TEXT = 2_000


def _registry_text(solicitation: Solicitation) -> str:
    data = solicitation.registry_data or {}
    return " ; ".join(f"{key} : {value}" for key, value in data.items() if value not in (None, "", [], {}))


def _flag_badges(flags: list[str]) -> Markup:
    return Markup(" ").join(Markup('<span class="badge badge-warning">{}</span>').format(flag) for flag in flags)


def _needs_links(solicitation: Solicitation) -> Markup | str:
    if not solicitation.needs:
        return "Pas encore"
    return Markup("<br>").join(_link("need.details_view", need.id, str(need)) for need in solicitation.needs)


def _ints(values: list[str]) -> list[int]:
    """The ids among URL arguments; anything else is dropped (the page explains nothing: it
    only preselects)."""
    return [ident for ident in map(expert_lookup.parse_id, values) if ident is not None]


class SolicitationView(FullTextSearchMixin, ReadOnlyModelView):
    """What the public form received; staff route or abandon what automation left for them.

    The desk's tabs (``?onglet=``, see ``services/requests/desk.py``) select the list: search, filters,
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
        "provenance",
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
        "provenance",
        "origin_url",
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
        "provenance",
        "origin_url",
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
        "need": "Besoin(s)",
        "description": "Description",
        "provenance": "Provenance",
        "origin_url": "Page d'origine",
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
        ParisDateTimeAfterFilter(Solicitation.created_at, "Date"),
        ParisDateTimeBeforeFilter(Solicitation.created_at, "Date"),
        ParisDateTimeBetweenFilter(Solicitation.created_at, "Date"),
        FilterEqual(Solicitation.channel, "Provenance", options=list(CHANNEL_LABELS.items())),
        IntEqualFilter(Solicitation.landing_id, "Landing", options=LazyOptions(landing_options)),
    ]
    column_default_sort = ("created_at", True)
    column_formatters = {
        "subject": lambda v, c, m, n: m.subject.label,
        "commune": lambda v, c, m, n: str(m.commune) if m.commune else m.insee_code,
        "qualification_notes": lambda v, c, m, n: notes_summary(m.qualification_notes),
        "flags": lambda v, c, m, n: _flag_badges(getattr(m, "desk_flags", [])),
        "provenance": lambda v, c, m, n: provenance_text(m),
    }
    column_formatters_detail = {
        **column_formatters,
        "qualification_notes": lambda v, c, m, n: (
            Markup("<br>").join(m.qualification_notes) if m.qualification_notes else "Aucun"
        ),
        "need": lambda v, c, m, n: _needs_links(m),
        "registry_data": lambda v, c, m, n: _registry_text(m),
    }
    column_formatters_export = {
        **column_formatters,
        "qualification_notes": lambda v, c, m, n: notes_text(m.qualification_notes),
        "need": lambda v, c, m, n: " ".join(f"#{need.id}" for need in m.needs),
        "flags": lambda v, c, m, n: ", ".join(getattr(m, "desk_flags", [])),
    }
    # The need is loaded with the page too: the export names it on every row.
    list_loader_options = (
        lambda: selectinload(Solicitation.subject),
        lambda: selectinload(Solicitation.commune),
        lambda: selectinload(Solicitation.needs),
        lambda: selectinload(Solicitation.landing).selectinload(Landing.partner),
        lambda: selectinload(Solicitation.filed_by).selectinload(User.institution),
        lambda: selectinload(Solicitation.api_key).selectinload(ApiKey.institution),
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
        """The tabs above the list, with their counts and links keeping the current search
        and filters. Counts stop at « plus de 10 000 »; « Abandonnées » and « Spam » are
        counted when one of them is open (telling them apart reads every cancellation's notes)."""
        current = self.current_tab()
        counts = desk.tab_counts(
            lambda query: policy.scope_query(current_user, Solicitation, query),
            cap=COUNT_CAP,
            with_spam=current in ("spam", "abandonnees"),
        )
        counts = {slug: None if n is None else (CappedCount(n) if n > COUNT_CAP else n) for slug, n in counts.items()}
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
        user_id = current_user.id
        self.run_action(
            ids,
            lambda solicitation: route_solicitation(solicitation, by_user_id=user_id),
            "{count} demande(s) transmise(s) aux experts.",
        )

    @action("abandonner", "Abandonner", "Abandonner les demandes sélectionnées ? Elles ne seront pas transmises.")
    def action_set_canceled(self, ids: list[str]) -> None:
        self.run_action(ids, cancel_solicitation, "{count} demande(s) abandonnée(s).")

    @action(
        "spam",
        "Abandonner comme spam",
        "Abandonner les demandes sélectionnées comme spam ? Les prochaines demandes de ces adresses attendront l'équipe.",
    )
    def action_set_spam(self, ids: list[str]) -> None:
        self.run_action(
            ids,
            lambda solicitation: cancel_solicitation(solicitation, reason=SPAM_REASON),
            "{count} demande(s) abandonnée(s) comme spam.",
        )

    @action(
        "abandonner-hors-champ",
        "Abandonner : hors du champ du service (email)",
        "Abandonner les demandes sélectionnées comme hors du champ du service ? "
        "Chaque entreprise reçoit un email qui l'oriente vers d'autres services publics.",
    )
    def action_set_canceled_out_of_scope(self, ids: list[str]) -> None:
        self._cancel_all(ids, "out_of_scope")

    @action(
        "abandonner-pas-entreprise",
        "Abandonner : pas une entreprise (email)",
        "Abandonner les demandes sélectionnées : elles ne viennent pas d'une entreprise ? "
        "Chaque demandeur reçoit un email qui l'oriente vers d'autres services publics.",
    )
    def action_set_canceled_not_a_company(self, ids: list[str]) -> None:
        self._cancel_all(ids, "not_a_company")

    @action(
        "abandonner-incomplete",
        "Abandonner : demande incomplète (email)",
        "Abandonner les demandes sélectionnées comme incomplètes ? "
        "Chaque entreprise reçoit un email l'invitant à redéposer sa demande avec plus de précisions.",
    )
    def action_set_canceled_incomplete(self, ids: list[str]) -> None:
        self._cancel_all(ids, "incomplete")

    def _cancel_all(self, ids: list[str], reason: str) -> None:
        user = current_user._get_current_object()
        self.run_action(
            ids,
            lambda solicitation: cancel_solicitation(solicitation, reason=reason, user=user),
            f"{{count}} demande(s) abandonnée(s) (« {CANCEL_REASONS[reason]} ») ; l'entreprise est prévenue par email.",
        )

    # ------------------------------------------------------------ the details page

    def render(self, template: str, **kwargs: Any):
        if template == self.details_template and "model" in kwargs:
            kwargs["desk"] = self.desk_context(kwargs["model"])
        return super().render(template, **kwargs)

    def desk_context(self, solicitation: Solicitation) -> dict[str, Any]:
        """What the qualification section shows: why it waits, the forms' choices and, for the
        subjects chosen (``?sujets=``, the current one by default), the experts routing suggests."""
        context: dict[str, Any] = {
            "flags": desk.flags_for([solicitation])[solicitation.id],
            "notes": notes_for(solicitation),
            "open": solicitation.status == SolicitationStatus.IN_PROGRESS,
            "return_url": get_redirect_target() or "",
        }
        if not context["open"]:
            return context
        carried = request.args.get("reprise") == "1"
        chosen = _ints(request.args.getlist("sujets")) or [solicitation.subject_id]
        error = None
        try:
            found = qualification.suggestions(solicitation, chosen)
        except ServiceError as exc:
            error = str(exc)
            found = []
            if solicitation.subject.is_offered:
                found = qualification.suggestions(solicitation, [solicitation.subject_id])
        blocks = []
        for suggestion in found:
            sid = suggestion.subject.id
            ticked = set(_ints(request.args.getlist(f"experts-{sid}"))) if carried else set(suggestion.expert_ids)
            blocks.append(
                {
                    "subject": suggestion.subject,
                    "rows": [
                        {
                            "id": found_expert.expert_id,
                            "expert": found_expert.expert,
                            "email": found_expert.email,
                            "antenne": found_expert.antenne,
                            "institution": found_expert.institution,
                            "zone": found_expert.zone_text,
                            "checks": found_expert.checks,
                            "absence": suggestion.absences.get(found_expert.expert_id),
                            "checked": found_expert.expert_id in ticked,
                        }
                        for found_expert in suggestion.experts
                    ],
                    "excluded": suggestion.excluded,
                    "added": request.args.get(f"ajout-{sid}", "")[:MAX_CARRIED_TEXT] if carried else "",
                }
            )
        context.update(
            themes=routing.routable_subjects(),
            chosen_ids=[block["subject"].id for block in blocks],
            blocks=blocks,
            routing_error=error,
            cancel_choices=CANCEL_CHOICES,
            emailed_reasons=EMAILED_REASONS,
        )
        return context

    def _back(self, solicitation: Solicitation, anchor: str, **args: Any):
        """Back to the details page (303: the browser GETs it), keeping the list to return to."""
        target = get_redirect_target()
        if target:
            args["url"] = target
        return redirect(url_for(".details_view", id=solicitation.id, _anchor=anchor, **args), 303)

    def _posted(self) -> Solicitation:
        """The request a form names (its ``id`` field), through the scoped query; 404 otherwise."""
        ident = expert_lookup.parse_id(request.form.get("id"))
        if ident is None:
            abort(404)
        return self.get_one(ident)

    def _expert_scope(self):
        user = current_user._get_current_object()
        return lambda stmt: policy.scope_query(user, Expert, stmt)

    @expose("/qualifier/experts/")
    def expert_choices_view(self):
        """Autocomplete of « ajouter un expert »: active experts by name or email (JSON)."""
        return jsonify(qualification.expert_choices(request.args.get("q", ""), scope=self._expert_scope()))

    @expose("/qualifier/sujet/", methods=("POST",))
    def correct_subject_view(self):
        solicitation = self._posted()
        try:
            with transaction():
                qualification.correct_subject(
                    solicitation, request.form.get("subject_id", ""), user=current_user._get_current_object()
                )
        except ServiceError as error:
            flash(f"Sujet non corrigé : {error}", "error")
            return self._back(solicitation, "qualification")
        flash(f"Sujet corrigé : « {solicitation.subject.label} ».", "success")
        return self._back(solicitation, "qualification")

    @expose("/qualifier/envoyer/", methods=("POST",))
    def send_view(self):
        """Send to the ticked and added experts; a refusal brings the page back as it was filled."""
        solicitation = self._posted()
        form = request.form
        subject_ids = form.getlist("subjects")
        try:
            with transaction():
                plan = []
                for sid in subject_ids:
                    added = expert_lookup.resolve_experts(form.get(f"ajout-{sid}", ""), scope=self._expert_scope())
                    plan.append((sid, [*form.getlist(f"experts-{sid}"), *added]))
                needs = qualification.send_solicitation(solicitation, plan, user=current_user._get_current_object())
        except ServiceError as error:
            flash(f"Demande non envoyée : {error}", "error")
            carried: dict[str, Any] = {"reprise": "1", "sujets": [s[:20] for s in subject_ids[:20]]}
            for sid in subject_ids[:20]:
                carried[f"experts-{sid[:20]}"] = form.getlist(f"experts-{sid}")[:200]
                text = form.get(f"ajout-{sid}", "")[:MAX_CARRIED_TEXT]
                if text:
                    carried[f"ajout-{sid[:20]}"] = text
            return self._back(solicitation, "aiguillage", **carried)
        experts = sum(len(need.matches) for need in needs)
        flash(
            f"Demande envoyée aux experts : {len(needs)} besoin(s), {experts} expert(s) prévenu(s) par email.",
            "success",
        )
        return self._back(solicitation, "qualification")

    @expose("/qualifier/abandonner/", methods=("POST",))
    def cancel_view(self):
        solicitation = self._posted()
        reason = request.form.get("reason", "")
        if reason not in CANCEL_REASONS:
            flash("Demande non abandonnée : choisissez un motif dans la liste.", "error")
            return self._back(solicitation, "abandon")
        if request.form.get("confirm") != "1":
            flash("Demande non abandonnée : cochez la case qui confirme l'abandon.", "error")
            return self._back(solicitation, "abandon")
        try:
            with transaction():
                cancel_solicitation(solicitation, reason=reason, user=current_user._get_current_object())
        except ServiceError as error:
            flash(f"Demande non abandonnée : {error}", "error")
            return self._back(solicitation, "abandon")
        if reason == SPAM_REASON:
            flash(
                "Demande abandonnée comme spam : aucun email envoyé ; "
                "les prochaines demandes de cette adresse attendront l'équipe.",
                "success",
            )
        else:
            flash(
                f"Demande abandonnée (« {CANCEL_REASONS[reason]} ») : un email l'explique à {solicitation.email}.",
                "success",
            )
        return self._back(solicitation, "qualification")

    @expose("/qualifier/note/", methods=("POST",))
    def note_view(self):
        solicitation = self._posted()
        try:
            with transaction():
                add_note(solicitation, user=current_user._get_current_object(), body=request.form.get("body", ""))
        except ServiceError as error:
            flash(f"Note non enregistrée : {error}", "error")
            return self._back(solicitation, "notes")
        flash("Note interne ajoutée.", "success")
        return self._back(solicitation, "notes")
