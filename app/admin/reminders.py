"""« Relances »: the relances desk (``services.requests.reminders``), for staff and referents.

Three pages: the needs baskets, the experts baskets, and the businesses' survey answers. A
referent sees their own experts and the needs sent to them, marks and annotates at their
institution's desk and may « Relancer » their experts; sending a « Dernière chance » early
and announcing a failure are staff's. Every posted id is read back through the policy's scope
(anything else is a 404), and every refusal comes back as a French message on the same page.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_login import current_user
from sqlalchemy import select

from app import policy
from app.admin.base import SecureBaseView
from app.admin.formatters import paris_time
from app.extensions import db
from app.models import MATCH_STATUS_LABELS, Expert, Need
from app.services.addressbook.expert_lookup import parse_id
from app.services.errors import ServiceError
from app.services.requests import reminders
from app.services.requests.followup import announce_failure, send_last_chance_now
from app.services.requests.satisfaction import answer_summary
from app.services.transactions import transaction

KINDS = {"besoin": Need, "expert": Expert}


def _page_arg() -> int:
    return parse_id(request.args.get("page")) or 1


class RemindersView(SecureBaseView):
    referent_access = "read"
    # Referents act on their own experts and on the needs sent to them (the services check the scope).
    referent_endpoints = ("mark_view", "note_view", "remind_view")

    def _user(self):
        return current_user._get_current_object()

    def _render(self, template: str, **context: Any):
        try:
            desk = reminders.desk_of(self._user())
        except ServiceError:
            abort(403)
        return self.render(
            template,
            desk=desk,
            need_baskets=reminders.NEED_BASKETS,
            expert_baskets=reminders.EXPERT_BASKETS,
            match_labels=MATCH_STATUS_LABELS,
            when=paris_time,
            is_staff=policy.is_staff(self._user()),
            **context,
        )

    # ------------------------------------------------------------ pages

    @expose("/")
    def index(self):
        return self.needs()

    @expose("/besoins")
    def needs(self):
        basket = request.args.get("panier") or next(iter(reminders.NEED_BASKETS))
        if basket not in reminders.NEED_BASKETS:
            abort(404)
        user = self._user()
        return self._render(
            "admin/reminders_needs.html",
            basket=basket,
            counts=reminders.need_counts(user),
            page=reminders.need_basket(user, basket, page=_page_arg()),
        )

    @expose("/experts")
    def experts(self):
        basket = request.args.get("panier") or next(iter(reminders.EXPERT_BASKETS))
        if basket not in reminders.EXPERT_BASKETS:
            abort(404)
        user = self._user()
        return self._render(
            "admin/reminders_experts.html",
            basket=basket,
            counts=reminders.expert_counts(user),
            page=reminders.expert_basket(user, basket, page=_page_arg()),
        )

    @expose("/avis")
    def answers(self):
        return self._render(
            "admin/reminders_answers.html",
            page=reminders.answers_for_desk(self._user(), page=_page_arg()),
            summary=answer_summary,
        )

    # ------------------------------------------------------------ what the desk does

    def _posted(self, kind: str | None = None) -> Need | Expert:
        """The need or expert a form names, read through the user's scope; 404 otherwise."""
        kind = kind or request.form.get("kind", "")
        model = KINDS.get(kind)
        ident = parse_id(request.form.get("id"))
        if model is None or ident is None:
            abort(404)
        record = db.session.scalar(policy.scope_query(self._user(), model, select(model).where(model.id == ident)))
        if record is None:
            abort(404)
        return record

    def _back(self, record: Need | Expert, **kept: str):
        """Back to the basket the form was posted from, at the item (``kept``: what was typed
        into a refused note, shown again)."""
        endpoint = ".experts" if isinstance(record, Expert) else ".needs"
        args = {"panier": request.form.get("panier", ""), "page": request.form.get("page", "")}
        args.update({key: value[:2000] for key, value in kept.items() if value})
        anchor = f"{'expert' if isinstance(record, Expert) else 'besoin'}-{record.id}"
        return redirect(url_for(endpoint, **{k: v for k, v in args.items() if v}, _anchor=anchor), 303)

    def _run(self, record: Need | Expert, verb, done: str, failed: str, **kept: str):
        try:
            with transaction():
                verb()
        except ServiceError as error:
            flash(f"{failed} : {error}", "error")
            return self._back(record, **kept)
        flash(done, "success")
        return self._back(record)

    @expose("/traiter", methods=("POST",))
    def mark_view(self):
        record = self._posted()
        basket = request.form.get("panier", "")
        target = {"need": record} if isinstance(record, Need) else {"expert": record}
        return self._run(
            record,
            lambda: reminders.mark_done(self._user(), basket=basket, **target),
            "Marqué comme traité : il quitte ce panier.",
            "Non marqué",
        )

    @expose("/noter", methods=("POST",))
    def note_view(self):
        record = self._posted()
        body = request.form.get("body", "")
        target = {"need": record} if isinstance(record, Need) else {"expert": record}
        kind = "besoin" if isinstance(record, Need) else "expert"
        return self._run(
            record,
            lambda: reminders.add_note(self._user(), body=body, **target),
            "Note enregistrée.",
            "Note non enregistrée",
            note_pour=f"{kind}-{record.id}",
            note=body,
        )

    @expose("/relancer", methods=("POST",))
    def remind_view(self):
        expert = self._posted("expert")
        return self._run(
            expert,
            lambda: reminders.remind_expert(self._user(), expert),
            f"Relance envoyée à {expert.full_name}.",
            "Relance non envoyée",
        )

    @expose("/derniere-chance", methods=("POST",))
    def last_chance_view(self):
        need = self._posted("besoin")
        return self._run(
            need,
            lambda: send_last_chance_now(need, user=self._user()),
            "« Dernière chance » envoyée aux experts qui n'ont pas répondu.",
            "« Dernière chance » non envoyée",
        )

    @expose("/echec", methods=("POST",))
    def failure_view(self):
        need = self._posted("besoin")
        return self._run(
            need,
            lambda: announce_failure(need, user=self._user()),
            "Échec annoncé à l'entreprise ; le besoin est clos.",
            "Échec non annoncé",
        )


def register(admin: Admin) -> None:
    admin.add_view(RemindersView(name="Relances", category="Demandes", endpoint="reminders", url="relances"))
