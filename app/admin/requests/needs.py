"""Following needs: one subject for one establishment, and how its experts answered."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.model.template import macro
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app import policy
from app.admin.base import ReadOnlyModelView
from app.admin.requests.common import POSITIVE_MATCH_STATUSES, _date, _link, satisfaction_text, zone_entry
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
    NeedStar,
)
from app.services.addressbook.absences import absence_text
from app.services.addressbook.expert_lookup import parse_id, resolve_expert, search_experts
from app.services.errors import ServiceError
from app.services.messaging.discussion import post_comment, thread
from app.services.reference.questions import need_answers, questions_of
from app.services.reference.registry import company_facts, headcount_text
from app.services.requests.followup import announce_failure
from app.services.requests.needs import (
    REASSIGNABLE_STATUSES,
    add_expert_to_need,
    is_starred,
    reassign_match,
    resend_need_email,
    star_need,
    unstar_need,
)
from app.services.requests.notes import add_note, notes_for
from app.services.requests.satisfaction import answer_of, share_answer
from app.services.requests.timeline import need_timeline
from app.services.transactions import transaction

# How many experts the « Ajouter un expert » / « Réattribuer » suggestions show.
SUGGESTION_LIMIT = 10


def form_id(value: str | None) -> int | None:
    """A record id posted by a form, or None when it cannot be one."""
    return parse_id(value)


def _star_cell(_view: Any, _context: Any, need: Need, _name: str) -> Markup:
    """« ★ » when the current user follows the need; the words are there for screen readers."""
    if getattr(need, "starred", False):
        return Markup(
            '<span aria-hidden="true" title="Vous suivez ce besoin">★</span><span class="sr-only">Suivi</span>'
        )
    return Markup('<span class="sr-only">Non suivi</span>')


def _expert_scope(stmt):
    """What the need page's expert fields may name: the policy's scope of experts."""
    return policy.scope_query(current_user, Expert, stmt)


def suggestion_value(expert: Expert) -> str:
    return f"{expert.full_name} <{expert.email}> #{expert.id}"


def _status_text(need: Need) -> str:
    """The status the matches give, and the failure when it was announced (the need is given up)."""
    label = NEED_STATUS_LABELS.get(need.status, need.status)
    if need.abandoned_at is not None:
        return f"{label} — échec annoncé le {_date(need.abandoned_at)}"
    return label


def need_answers_text(need: Need) -> str:
    """« Question : réponse · … » of the request the need came from (its own subject's questions)."""
    return " · ".join(f"{question} : {answer}" for question, answer in need_answers(need, _cached_questions))


def _cached_questions(subject_id: int) -> list:
    """One query per subject and request, however many needs a list or an export shows."""
    cache = g.setdefault("subject_questions", {})
    if subject_id not in cache:
        cache[subject_id] = questions_of(subject_id)
    return cache[subject_id]


def routing_checks_markup(need: Need) -> Markup | str:
    """What the filters decided when the need was sent: who was excluded, who kept, and why."""
    entries = need.routing_checks or []
    if not entries:
        return "Aucun filtre ne concernait ces experts."
    words = {"accepte": "reçu", "refuse": "exclu", "non-evalue": "reçu, filtre non évalué"}
    items = [
        Markup("<li><strong>{}</strong> — {} ({}) : {}</li>").format(
            words.get(entry.get("decision"), entry.get("decision")),
            entry.get("expert"),
            entry.get("institution"),
            " ; ".join(entry.get("checks") or []),
        )
        for entry in entries
    ]
    return Markup('<ul class="mb-0">{}</ul>').format(Markup("").join(items))


class NeedView(FullTextSearchMixin, ReadOnlyModelView):
    """One subject for one establishment, and how its experts answered."""

    referent_access = "read"
    details_template = "admin/requests_need_details.html"
    column_list = ["starred", "created_at", "subject", "company", "commune", "status", "match_count", "positive_count"]
    column_details_list = [
        "created_at",
        "status",
        "solicitation",
        "subject",
        "company",
        "siret",
        "company_facts",
        "commune",
        "contact",
        "contact_email",
        "contact_phone",
        "description",
        "subject_answers",
        "routing_checks",
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
        "abandoned_at",
        "satisfaction",
        # The registry's facts, after the columns partners' spreadsheets already read by position.
        "headcount",
        "created_on",
        "naf_code",
        "legal_form",
        "activity_nature",
        # Issue 14: the answers to the subject's questions.
        "subject_answers",
    ]
    column_labels = {
        "starred": "Suivi",
        "created_at": "Date",
        "subject": "Sujet",
        "subject.label": "Sujet",
        "company": "Entreprise",
        "siret": "SIRET",
        "company_facts": "Registre des entreprises",
        "headcount": "Effectif",
        "created_on": "Création",
        "naf_code": "Activité principale (NAF)",
        "legal_form": "Forme juridique",
        "activity_nature": "Nature d'activité",
        "commune": "Commune",
        "status": "Statut",
        "abandoned_at": "Échec annoncé le",
        "satisfaction": "Avis de l'entreprise",
        "match_count": "Mises en relation",
        "positive_count": "Dont positives",
        "solicitation": "Sollicitation",
        "contact": "Contact",
        "contact_email": "Email du contact",
        "contact_phone": "Téléphone du contact",
        "description": "Description",
        "matches": "Mises en relation",
        "subject_answers": "Réponses aux questions",
        "routing_checks": "Filtres de mise en relation",
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
        "starred": _star_cell,
        "status": lambda v, c, m, n: _status_text(m),
        "satisfaction": lambda v, c, m, n: satisfaction_text(m.satisfaction),
        "subject": lambda v, c, m, n: m.subject.label,
        "company": lambda v, c, m, n: m.facility.company.name,
        "siret": lambda v, c, m, n: m.facility.siret,
        "company_facts": lambda v, c, m, n: " · ".join(
            f"{label} : {text}" for label, text in company_facts(m.facility)
        ),
        "headcount": lambda v, c, m, n: headcount_text(m.facility.headcount_code),
        "created_on": lambda v, c, m, n: m.facility.created_on.isoformat() if m.facility.created_on else "",
        "naf_code": lambda v, c, m, n: m.facility.naf_code or "",
        "legal_form": lambda v, c, m, n: m.facility.company.legal_form or "",
        "activity_nature": lambda v, c, m, n: m.facility.activity_nature or "",
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
        "subject_answers": lambda v, c, m, n: need_answers_text(m),
    }
    column_formatters_detail = {
        **column_formatters,
        "solicitation": lambda v, c, m, n: (
            _link("solicitation.details_view", m.solicitation_id, str(m.solicitation))
            if m.solicitation_id
            else "Créé par l'équipe"
        ),
        "matches": macro("render_matches"),
        "routing_checks": lambda v, c, m, n: routing_checks_markup(m) if policy.is_staff(current_user) else "—",
    }

    @action(
        "annoncer-echec",
        "Annoncer l'échec à l'entreprise",
        "Annoncer à chaque entreprise que sa demande n'a pas abouti ? Seuls les besoins refusés par tous "
        "leurs experts peuvent l'être avant le délai de suivi.",
    )
    def action_announce_failure(self, ids: list[str]) -> None:
        user = current_user._get_current_object()
        self.run_action(ids, lambda need: announce_failure(need, user=user), "{count} échec(s) annoncé(s).")

    list_loader_options = (
        lambda: selectinload(Need.satisfaction),
        lambda: selectinload(Need.solicitation),
        lambda: selectinload(Need.subject),
        lambda: selectinload(Need.facility).selectinload(Facility.company),
        lambda: selectinload(Need.facility).selectinload(Facility.commune),
    )

    def annotate(self, rows: list[Need]) -> None:
        # A referent counts only their experts' matches: other institutions' do not exist for them.
        counts = {
            need_id: (total, positive)
            for need_id, total, positive in db.session.execute(
                policy.scope_query(
                    current_user,
                    Match,
                    select(
                        Match.need_id,
                        func.count(Match.id),
                        func.count(Match.id).filter(Match.status.in_(POSITIVE_MATCH_STATUSES)),
                    )
                    .where(Match.need_id.in_([r.id for r in rows]))
                    .group_by(Match.need_id),
                )
            )
        }
        starred = set(
            db.session.scalars(
                select(NeedStar.need_id).where(
                    NeedStar.user_id == current_user.id, NeedStar.need_id.in_([r.id for r in rows])
                )
            )
        )
        for row in rows:
            row.match_count, row.positive_count = counts.get(row.id, (0, 0))
            row.starred = row.id in starred

    def history(self, model: Any) -> list:
        """The generic trail is folded into the need's timeline (``timeline``): not read twice."""
        return []

    def match_rows(self, need: Need) -> list[dict[str, Any]]:
        """The matches of the details page, each as the strings staff read (one query for all)."""
        matches = db.session.scalars(
            policy.scope_query(
                current_user,
                Match,
                select(Match)
                .where(Match.need_id == need.id)
                .options(selectinload(Match.expert).selectinload(Expert.antenne).selectinload(Antenne.institution))
                .order_by(Match.id),
            )
        )
        return [
            {
                "id": match.id,
                "expert": match.expert.full_name,
                "email": match.expert.email,
                "deleted": match.expert.deleted_at is not None,
                "absence": absence_text(match.expert),
                "antenne": match.expert.antenne.name,
                "institution": match.expert.antenne.institution.name,
                "status": MATCH_STATUS_LABELS.get(match.status, match.status),
                "zone": zone_entry(match),
                "taken_care_at": _date(match.taken_care_at),
                "closed_at": _date(match.closed_at),
                "reassignable": match.status in REASSIGNABLE_STATUSES,
            }
            for match in matches
        ]

    def comments(self, need: Need) -> list:
        """The need's thread, authors loaded (the details page shows it under the matches).
        Staff only: the thread names experts of every institution on the need."""
        return thread(need) if self.staff() else []

    def timeline(self, need: Need) -> list:
        return need_timeline(need)

    def notes(self, need: Need) -> list:
        return notes_for(need)

    def staff(self) -> bool:
        """Whether the page shows staff's tools (follow, add, reassign, notes, timeline): a
        partner referent reads the need and its matches, nothing internal."""
        return policy.is_staff(current_user)

    def is_starred(self, need: Need) -> bool:
        return is_starred(need, current_user)

    # ------------------------------------------------------------ staff actions on one need
    # Each posts the need's ``id`` and the CSRF token, calls one service verb, flashes what
    # happened in French and comes back to the page (303, so a reload does not post again).

    def _posted_need(self) -> Need:
        """The need a form posted, through the policy's scope; 404 for anything else."""
        ident = form_id(request.form.get("id"))
        if ident is None:
            abort(404)
        return self.get_one(ident)

    def _back(self, need_id: int, anchor: str, **kept: Any):
        """Back to the page; ``kept`` carries what was typed into a refused form, so the form
        shows it again (nothing typed is lost)."""
        kept = {key: value[:500] for key, value in kept.items() if value}
        return redirect(url_for(".details_view", id=need_id, _anchor=anchor, **kept), 303)

    def _run(self, need: Need, anchor: str, verb, done: str, failed: str):
        try:
            with transaction():
                verb()
        except ServiceError as error:
            flash(f"{failed} : {error}", "error")
        else:
            flash(done, "success")
        return self._back(need.id, anchor)

    def _expert_from_input(self, text: str) -> Expert:
        """The expert staff typed or picked (« Nom <email> #12 » or a bare email)."""
        return resolve_expert(text, scope=_expert_scope)

    @expose("/experts/")
    def expert_suggestions(self):
        """Active experts matching what staff type (name or email), for the forms' suggestions."""
        query = (request.args.get("q") or "").strip()[:100]
        if len(query) < 2:
            return jsonify([])
        experts = search_experts(query, scope=_expert_scope, limit=SUGGESTION_LIMIT)
        return jsonify(
            [
                {
                    "value": suggestion_value(expert),
                    "label": f"{expert.antenne.name} — {expert.antenne.institution.name}",
                }
                for expert in experts
            ]
        )

    @expose("/ajouter-expert/", methods=("POST",))
    def add_expert_view(self):
        need = self._posted_need()
        try:
            with transaction():
                expert = self._expert_from_input(request.form.get("expert", ""))
                add_expert_to_need(need, expert, user=current_user._get_current_object())
        except ServiceError as error:
            flash(f"Expert non ajouté : {error}", "error")
            return self._back(need.id, "ajouter-expert", expert=request.form.get("expert", ""))
        flash(f"{expert.full_name} a reçu le besoin ; l'email lui est envoyé.", "success")
        return self._back(need.id, "mises-en-relation")

    @expose("/reattribuer/", methods=("POST",))
    def reassign_view(self):
        need = self._posted_need()
        try:
            with transaction():
                match_id = form_id(request.form.get("match_id"))
                match = (
                    None
                    if match_id is None
                    else db.session.scalar(
                        policy.scope_query(
                            current_user, Match, select(Match).where(Match.id == match_id, Match.need_id == need.id)
                        )
                    )
                )
                if match is None:
                    raise ServiceError(
                        "Mise en relation introuvable sur ce besoin (elle a peut-être déjà été réattribuée)."
                    )
                expert = self._expert_from_input(request.form.get("expert", ""))
                old_name = match.expert.full_name
                reassign_match(match, expert, user=current_user._get_current_object())
        except ServiceError as error:
            flash(f"Mise en relation non réattribuée : {error}", "error")
            return self._back(
                need.id,
                "mises-en-relation",
                reassign=request.form.get("match_id", ""),
                expert=request.form.get("expert", ""),
            )
        flash(f"Besoin réattribué de {old_name} à {expert.full_name} ; tous deux sont prévenus par email.", "success")
        return self._back(need.id, "mises-en-relation")

    @expose("/suivre/", methods=("POST",))
    def star_view(self):
        need = self._posted_need()
        user = current_user._get_current_object()
        if request.form.get("follow") == "0":
            return self._run(
                need, "suivi", lambda: unstar_need(need, user), "Vous ne suivez plus ce besoin.", "Impossible"
            )
        return self._run(need, "suivi", lambda: star_need(need, user), "Vous suivez ce besoin.", "Impossible")

    @expose("/partager-avis/", methods=("POST",))
    def share_answer_view(self):
        need = self._posted_need()
        user = current_user._get_current_object()
        return self._run(
            need,
            "avis",
            lambda: share_answer(need, user=user),
            "Avis partagé avec les experts qui ont clôturé le besoin et leurs référents.",
            "Avis non partagé",
        )

    def satisfaction(self, need: Need):
        return answer_of(need)

    def satisfaction_line(self, need: Need) -> str:
        return satisfaction_text(answer_of(need))

    def date_text(self, value) -> str:
        return _date(value)

    @expose("/renvoyer/", methods=("POST",))
    def resend_view(self):
        need = self._posted_need()
        user = current_user._get_current_object()

        def verb():
            email_id = form_id(request.form.get("email_id"))
            if email_id is None:
                raise ServiceError("Courriel introuvable.")
            resend_need_email(need, email_id, user=user)

        return self._run(need, "historique", verb, "Courriel remis en file d'envoi.", "Courriel non renvoyé")

    @expose("/noter/", methods=("POST",))
    def note_view(self):
        need = self._posted_need()
        user = current_user._get_current_object()
        body = request.form.get("body", "")
        return self._run(
            need,
            "notes",
            lambda: add_note(need, user=user, body=body),
            "Note interne enregistrée.",
            "Note non enregistrée",
        )

    @expose("/commenter/", methods=("POST",))
    def comment_view(self):
        """Staff write on the thread; the service checks they are staff (a referent is refused)."""
        need = self._posted_need()
        body = request.form.get("body", "")
        try:
            with transaction():
                post_comment(need, body=body, user=current_user._get_current_object(), source="admin")
        except ServiceError as error:
            flash(f"Message non envoyé : {error}", "error")
            return redirect(url_for(".details_view", id=need.id, _anchor="discussion"), 303)
        flash("Message envoyé sur la discussion.", "success")
        return redirect(url_for(".details_view", id=need.id, _anchor="discussion"), 303)
