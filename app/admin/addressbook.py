"""Back-office views of the address book: institutions, antennes, experts, offers.

Declarative configuration only: saving and deleting go through the service verbs of
``app/services/addressbook.py`` (imported inside the hooks so this module loads on its own).
Partner referents read their institution and maintain its antennes, experts and offer
(``referent_access``; the policy in ``app/policy.py`` scopes every row, option and count).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import has_request_context, jsonify, request, url_for
from flask_admin import Admin, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_admin.contrib.sqla.filters import BooleanEqualFilter, IntEqualFilter
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import StringField
from wtforms.validators import DataRequired, Email, Optional, ValidationError

from app import policy
from app.admin.base import SecureModelView
from app.admin.fields import ZoneField, antenne_lookup
from app.admin.filters import DeletedFilter, InSubqueryFilter, LazyOptions
from app.extensions import db
from app.models import (
    ZONE_KIND_LABELS,
    Antenne,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Subject,
    Theme,
)
from app.services.accounts.users import normalize_email
from app.services.addressbook.addressbook import (
    delete_antenne,
    delete_expert,
    delete_institution,
    restore_antenne,
    restore_institution,
    set_zone,
    slugify,
)
from app.services.addressbook.expertise import set_expert_subjects
from app.services.errors import ServiceError
from app.services.reference import geo

# ---------------------------------------------------------------- shared helpers


def institution_options() -> list[tuple[str, str]]:
    """Filter options: the institutions the current user may see (a referent, theirs only)."""
    user = current_user if has_request_context() else None
    query = policy.scope_query(user, Institution, select(Institution.id, Institution.name).order_by(Institution.name))
    return [(str(i), name) for i, name in db.session.execute(query)]


def subject_options() -> list[tuple[str, str]]:
    return [
        (str(i), label)
        for i, label in db.session.execute(
            select(Subject.id, Subject.label).join(Theme).order_by(Theme.position, Subject.position)
        )
    ]


def zone_text(owner: Antenne | Expert) -> str:
    """The zone as the editor shows it: ``national`` or the references."""
    if owner.national:
        return geo.NATIONAL
    return " ".join(zone.reference for zone in owner.zones)


def zone_summary(owner: Antenne | Expert) -> str:
    """A compact list-page summary (codes grouped by kind), computed from loaded rows only."""
    if owner.national:
        return "National"
    by_kind: dict[str, list[str]] = defaultdict(list)
    for zone in owner.zones:
        by_kind[zone.kind].append(zone.code)
    return " · ".join(f"{ZONE_KIND_LABELS[kind]} {', '.join(codes)}" for kind, codes in by_kind.items())


def zone_labels(owner: Antenne | Expert) -> str:
    """Human names of every territory of the zone, for the details page."""
    if owner.national:
        return "National (toute la France)"
    references = [(zone.kind, zone.code) for zone in owner.zones]
    labels = geo.territory_labels(references)
    return " ; ".join(labels.get(ref, f"{ref[0]}:{ref[1]}") for ref in references)


def filters_markup(owner: Institution | Antenne | Expert) -> Markup:
    """The routing filters an institution, antenne or expert holds, each linked, and a link to
    add one with this holder prefilled (issue 14)."""
    from app.models import RoutingFilter

    kind = {Institution: "institution", Antenne: "antenne", Expert: "expert"}[type(owner)]
    column = getattr(RoutingFilter, f"{kind}_id")
    held = db.session.scalars(
        policy.scope_query(current_user, RoutingFilter, select(RoutingFilter).where(column == owner.id))
    ).all()
    items = [
        Markup('<li><a href="{}">{}</a></li>').format(
            url_for("routing_filter.details_view", id=found.id), f"Filtre #{found.id}"
        )
        for found in held
    ]
    listing = (
        Markup('<ul class="mb-1">{}</ul>').format(Markup("").join(items))
        if items
        else Markup('<p class="mb-1">Aucun filtre : seule la règle sujet × territoire s\'applique.</p>')
    )
    add = Markup('<a href="{}">Ajouter un filtre</a>').format(
        url_for("routing_filter.create_view", **{f"{kind}_id": owner.id})
    )
    return listing + add


class ZoneEditingMixin:
    """A zone editor field named ``zone`` saved through ``addressbook.set_zone``."""

    zone_empty_label = "Aucun territoire"
    # The territory autocomplete serves reference data: whoever may open the form may use it.
    referent_endpoints = ("territories",)

    @property
    def extra_js(self) -> list[str]:
        return [url_for("static", filename="admin/zone_editor.js")]

    @expose("/territoires")
    def territories(self):
        """Autocomplete over territories for the zone editor (JSON, select2's ``id``/``text``)."""
        query = request.args.get("q", "")
        results = geo.search_territories(query)
        if len(query.strip()) >= 2 and geo.NATIONAL.startswith(query.strip().lower()):
            results.insert(0, {"id": geo.NATIONAL, "text": "National (toute la France)"})
        return jsonify(results)

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        if request.method == "GET":
            form.zone.data = zone_text(self.get_one(id))

    def save_zone(self, form: Any, model: Antenne | Expert) -> None:
        try:
            set_zone(model, form.zone.data or "")
        except ServiceError as error:
            form.zone.errors = [*form.zone.errors, str(error)]
            raise


# ---------------------------------------------------------------- institutions


def _antenne_counts(institution_ids: list[int]) -> dict[int, int]:
    """Antennes per institution, counting only those the current user sees."""
    query = (
        select(Antenne.institution_id, func.count(Antenne.id))
        .where(Antenne.institution_id.in_(institution_ids))
        .group_by(Antenne.institution_id)
    )
    return dict(db.session.execute(policy.scope_query(current_user, Antenne, query)).all())


class InstitutionView(SecureModelView):
    # Referents read their institution; its name and identifier are staff's to change.
    referent_access = "read"
    column_list = ["name", "slug", "antenne_count", "deleted_at"]
    column_details_list = ["name", "slug", "antenne_count", "routing_filters", "created_at", "deleted_at"]
    column_labels = {
        "routing_filters": "Filtres de mise en relation",
        "name": "Nom",
        "slug": "Identifiant",
        "antenne_count": "Antennes",
        "created_at": "Créée le",
        "deleted_at": "Supprimée le",
    }
    column_searchable_list = ["name", "slug"]
    column_filters = [DeletedFilter(Institution.deleted_at, "Supprimée")]
    column_default_sort = "name"
    column_formatters = {
        "routing_filters": lambda v, c, m, n: filters_markup(m),
        "antenne_count": lambda v, c, m, n: (
            m.antenne_count if hasattr(m, "antenne_count") else _antenne_counts([m.id]).get(m.id, 0)
        ),
    }
    form_columns = ["name", "slug"]
    form_extra_fields = {
        "slug": StringField(
            "Identifiant",
            validators=[Optional()],
            description="Laissez vide pour le dériver du nom (« Chambre de Métiers » → chambre-de-metiers).",
        )
    }

    def annotate(self, rows: list[Institution]) -> None:
        counts = _antenne_counts([r.id for r in rows])
        for row in rows:
            row.antenne_count = counts.get(row.id, 0)

    def on_model_change(self, form: Any, model: Institution, is_created: bool) -> None:
        model.name = (model.name or "").strip()
        model.slug = slugify(model.slug or "") or slugify(model.name)
        if not model.slug:
            raise ServiceError("Le nom doit contenir au moins une lettre ou un chiffre.")

    @action("supprimer", "Supprimer", "Supprimer les institutions sélectionnées ?")
    def action_delete(self, ids: list[str]) -> None:
        self.run_action(ids, delete_institution, "{count} institution(s) supprimée(s).")

    @action("restaurer", "Restaurer")
    def action_restore(self, ids: list[str]) -> None:
        self.run_action(ids, restore_institution, "{count} institution(s) restaurée(s).")


# ---------------------------------------------------------------- antennes


class AntenneView(ZoneEditingMixin, SecureModelView):
    # An institution referent creates and deletes its antennes; an antenne referent edits its own.
    referent_access = "write"
    column_list = ["name", "institution", "zone", "national", "expert_count", "deleted_at"]
    column_details_list = [
        "name",
        "institution",
        "zone_labels",
        "national",
        "expert_count",
        "routing_filters",
        "created_at",
        "deleted_at",
    ]
    column_labels = {
        "routing_filters": "Filtres de mise en relation",
        "name": "Nom",
        "institution": "Institution",
        "institution.name": "Institution",
        "zone": "Zone",
        "zone_labels": "Zone",
        "national": "Nationale",
        "expert_count": "Experts",
        "created_at": "Créée le",
        "deleted_at": "Supprimée le",
    }
    column_sortable_list = ["name", ("institution", "institution.name"), "national", "deleted_at"]
    column_searchable_list = ["name", "institution.name"]
    column_filters = [
        IntEqualFilter(Antenne.institution_id, "Institution", options=LazyOptions(institution_options)),
        BooleanEqualFilter(Antenne.national, "Nationale"),
        DeletedFilter(Antenne.deleted_at, "Supprimée"),
    ]
    column_default_sort = "name"
    column_formatters = {
        "routing_filters": lambda v, c, m, n: filters_markup(m),
        "zone": lambda v, c, m, n: zone_summary(m),
        "zone_labels": lambda v, c, m, n: zone_labels(m),
        "expert_count": lambda v, c, m, n: (
            m.expert_count if hasattr(m, "expert_count") else len([e for e in m.experts if e.deleted_at is None])
        ),
    }
    list_loader_options = (
        lambda: selectinload(Antenne.institution),
        lambda: selectinload(Antenne.zones),
    )
    form_columns = ["institution", "name", "zone"]
    form_extra_fields = {"zone": ZoneField("Zone")}
    form_args = {
        "institution": {
            "label": "Institution",
            "query_factory": lambda: (
                db.session.query(Institution).filter(Institution.deleted_at.is_(None)).order_by(Institution.name)
            ),
        },
        "name": {"label": "Nom"},
    }

    def annotate(self, rows: list[Antenne]) -> None:
        counts = dict(
            db.session.execute(
                select(Expert.antenne_id, func.count(Expert.id))
                .where(Expert.antenne_id.in_([r.id for r in rows]), Expert.deleted_at.is_(None))
                .group_by(Expert.antenne_id)
            ).all()
        )
        for row in rows:
            row.expert_count = counts.get(row.id, 0)

    def on_model_change(self, form: Any, model: Antenne, is_created: bool) -> None:
        self.save_zone(form, model)

    @action("supprimer", "Supprimer", "Supprimer les antennes sélectionnées ?")
    def action_delete(self, ids: list[str]) -> None:
        self.run_action(ids, delete_antenne, "{count} antenne(s) supprimée(s).")

    @action("restaurer", "Restaurer")
    def action_restore(self, ids: list[str]) -> None:
        self.run_action(ids, restore_antenne, "{count} antenne(s) restaurée(s).")


# ---------------------------------------------------------------- experts


def _subject_query():
    return db.session.query(Subject).join(Theme).filter(Subject.is_offered).order_by(Theme.position, Subject.position)


def _subject_labels(expert: Expert) -> str:
    return ", ".join(sorted(link.institution_subject.subject.label for link in expert.subjects))


def _own_zone(expert: Expert) -> str:
    return zone_summary(expert) if expert.has_own_zone else "zone de l'antenne"


def _absence_order(form: Any, field: Any) -> None:
    """An absence ends on or after its first day (the database refuses the rest)."""
    start = form.absent_from.data
    if start and field.data and field.data < start:
        raise ValidationError("La fin de l'absence doit être le jour de son début ou après.")


def _day(value: Any) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


class ExpertView(ZoneEditingMixin, SecureModelView):
    referent_access = "write"
    column_list = [
        "full_name",
        "email",
        "phone",
        "job_title",
        "antenne",
        "institution",
        "subject_labels",
        "own_zone",
        "absent_from",
        "absent_until",
        "deleted_at",
    ]
    column_details_list = [
        "full_name",
        "email",
        "phone",
        "job_title",
        "antenne",
        "institution",
        "subject_labels",
        "zone_labels",
        "absent_from",
        "absent_until",
        "routing_filters",
        "created_at",
        "deleted_at",
    ]
    column_labels = {
        "routing_filters": "Filtres de mise en relation",
        "full_name": "Nom",
        "email": "Email",
        "phone": "Téléphone",
        "job_title": "Fonction",
        "antenne": "Antenne",
        "antenne.name": "Antenne",
        "institution": "Institution",
        "subject_labels": "Sujets",
        "own_zone": "Zone propre",
        "zone_labels": "Zone propre",
        "created_at": "Créé le",
        "deleted_at": "Supprimé le",
        "offered_subjects": "Sujets",
        "absent_from": "Absent à partir du",
        "absent_until": "Absent jusqu'au",
    }
    column_sortable_list = ["full_name", "email", ("antenne", "antenne.name"), "deleted_at"]
    column_searchable_list = ["full_name", "email", "antenne.name"]
    column_filters = [
        InSubqueryFilter(
            Expert.antenne_id,
            "Institution",
            lambda ident: select(Antenne.id).where(Antenne.institution_id == ident),
            options=LazyOptions(institution_options),
        ),
        InSubqueryFilter(
            Expert.id,
            "Sujet",
            lambda ident: (
                select(ExpertSubject.expert_id)
                .join(InstitutionSubject, InstitutionSubject.id == ExpertSubject.institution_subject_id)
                .where(InstitutionSubject.subject_id == ident)
            ),
            options=LazyOptions(subject_options),
        ),
        DeletedFilter(Expert.deleted_at, "Supprimé"),
    ]
    column_default_sort = "full_name"
    column_formatters = {
        "routing_filters": lambda v, c, m, n: filters_markup(m),
        "institution": lambda v, c, m, n: m.antenne.institution.name,
        "subject_labels": lambda v, c, m, n: _subject_labels(m),
        "own_zone": lambda v, c, m, n: _own_zone(m),
        "zone_labels": lambda v, c, m, n: zone_labels(m) if m.has_own_zone else "Zone de l'antenne",
        "absent_from": lambda v, c, m, n: _day(m.absent_from),
        "absent_until": lambda v, c, m, n: _day(m.absent_until),
    }
    list_loader_options = (
        lambda: selectinload(Expert.antenne).selectinload(Antenne.institution),
        lambda: (
            selectinload(Expert.subjects)
            .selectinload(ExpertSubject.institution_subject)
            .selectinload(InstitutionSubject.subject)
        ),
        lambda: selectinload(Expert.zones),
    )
    form_columns = [
        "antenne",
        "full_name",
        "email",
        "phone",
        "job_title",
        "offered_subjects",
        "zone",
        "absent_from",
        "absent_until",
    ]
    form_args = {
        "full_name": {"label": "Nom", "validators": [DataRequired("Indiquez le nom.")]},
        "email": {
            "label": "Email",
            "filters": [lambda value: value.strip() if value else value],
            "validators": [DataRequired("Indiquez l'adresse email."), Email("Adresse email invalide.")],
        },
        "phone": {"label": "Téléphone"},
        "job_title": {"label": "Fonction"},
        "antenne": {
            "label": "Antenne",
            "validators": [DataRequired("Choisissez l'antenne parmi celles proposées.")],
        },
        "absent_from": {"label": "Absent à partir du", "validators": [Optional()]},
        "absent_until": {
            "label": "Absent jusqu'au",
            "validators": [Optional(), _absence_order],
            "description": "Indiqué aux autres experts des demandes reçues et à l'équipe support.",
        },
    }
    form_ajax_refs = {"antenne": antenne_lookup()}
    form_extra_fields = {
        "offered_subjects": QuerySelectMultipleField(
            "Sujets",
            query_factory=_subject_query,
            get_label=lambda s: f"{s.theme.label} — {s.label}",
            description="L'offre de l'institution est créée si elle n'existe pas encore.",
        ),
        "zone": ZoneField(
            "Zone propre",
            description="Laissez vide pour utiliser la zone de l'antenne ; sinon, comme pour une antenne : "
            "« region:84 departement:69 », ou « national ».",
        ),
    }

    def scope_form(self, form: Any) -> Any:
        """Who may not open a new offer for the institution (an antenne referent) picks among
        the subjects it already offers."""
        form = super().scope_form(form)
        field = getattr(form, "offered_subjects", None)
        if field is not None and not policy.can_create(current_user, InstitutionSubject):
            offered = select(InstitutionSubject.subject_id).where(
                InstitutionSubject.institution_id == current_user.institution_id
            )
            field.query = field.query.filter(Subject.id.in_(offered))
            field._object_list = None
            field.description = "Les sujets que votre institution propose déjà."
        return form

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        if request.method == "GET":
            expert = self.get_one(id)
            form.offered_subjects.data = [link.institution_subject.subject for link in expert.subjects]

    def on_model_change(self, form: Any, model: Expert, is_created: bool) -> None:
        model.email = normalize_email(model.email or "")
        set_expert_subjects(model, form.offered_subjects.data or [])
        self.save_zone(form, model)

    @action(
        "supprimer", "Supprimer", "Supprimer les experts sélectionnés ? Leurs données personnelles seront effacées."
    )
    def action_delete(self, ids: list[str]) -> None:
        self.run_action(ids, delete_expert, "{count} expert(s) supprimé(s).")


# ---------------------------------------------------------------- institutions' offers


class InstitutionSubjectView(SecureModelView):
    # The institution's offer: an institution referent's to write (an antenne referent reads it).
    referent_access = "write"
    column_list = ["institution", "subject", "description"]
    column_labels = {
        "institution": "Institution",
        "institution.name": "Institution",
        "subject": "Sujet",
        "subject.label": "Sujet",
        "description": "Description",
        "created_at": "Créée le",
    }
    column_details_list = ["institution", "subject", "description", "created_at"]
    column_sortable_list = [("institution", "institution.name"), ("subject", "subject.label")]
    column_searchable_list = ["institution.name", "subject.label"]
    column_filters = [
        IntEqualFilter(InstitutionSubject.institution_id, "Institution", options=LazyOptions(institution_options)),
        IntEqualFilter(InstitutionSubject.subject_id, "Sujet", options=LazyOptions(subject_options)),
    ]
    list_loader_options = (
        lambda: selectinload(InstitutionSubject.institution),
        lambda: selectinload(InstitutionSubject.subject),
    )
    form_columns = ["institution", "subject", "description"]
    form_args = {
        "institution": {
            "label": "Institution",
            "query_factory": lambda: (
                db.session.query(Institution).filter(Institution.deleted_at.is_(None)).order_by(Institution.name)
            ),
        },
        "subject": {"label": "Sujet", "query_factory": lambda: db.session.query(Subject).order_by(Subject.label)},
        "description": {"label": "Description"},
    }


def register(admin: Admin) -> None:
    category = "Annuaire"
    admin.add_view(InstitutionView(Institution, db, name="Institutions", category=category, endpoint="institution"))
    admin.add_view(AntenneView(Antenne, db, name="Antennes", category=category, endpoint="antenne"))
    admin.add_view(ExpertView(Expert, db, name="Experts", category=category, endpoint="expert"))
    admin.add_view(
        InstitutionSubjectView(
            InstitutionSubject, db, name="Offres des institutions", category=category, endpoint="institution_subject"
        )
    )
