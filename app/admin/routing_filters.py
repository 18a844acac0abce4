"""Back-office views of what narrows routing beyond subject × territory (issue 14): the routing
filters of institutions, antennes and experts, the questions a subject asks, and the answers
an institution takes. Declarative configuration; saving goes through
``services.addressbook.filters`` (the same checks as the import file), and the policy scopes
every row and option to the referent's institution or antenne.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request
from flask_admin import Admin
from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_admin.contrib.sqla.filters import IntEqualFilter
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired

from app import policy
from app.admin.addressbook import institution_options, subject_options
from app.admin.base import SecureModelView
from app.admin.fields import antenne_lookup, expert_lookup
from app.admin.filters import LazyOptions
from app.extensions import db
from app.models import (
    Antenne,
    Expert,
    Institution,
    InstitutionSubject,
    OfferExpectation,
    RoutingFilter,
    RoutingFilterSubject,
    Subject,
    SubjectQuestion,
    Theme,
)
from app.models.filters import CODE_LIST_COLUMNS, NUMBER_COLUMNS
from app.services.addressbook.company_filters import ACTIVITY_NATURES
from app.services.addressbook.filters import FIELD_LABELS, apply_filter
from app.services.errors import ServiceError
from app.services.reference.questions import parse_choices, parse_expectation

_CRITERIA_HINTS = {
    "min_years": "La société a au moins ce nombre d'années d'existence.",
    "max_headcount": "La borne haute de la tranche d'effectif INSEE ne dépasse pas ce nombre.",
    "min_headcount": "La borne basse de la tranche d'effectif INSEE atteint au moins ce nombre (10 : 10 salariés et plus).",
    "naf_accepted": "Séparés par des espaces : une section (C), une division (47), un code (47.11Z).",
    "naf_excluded": "Mêmes formes que ci-dessus ; une exclusion l'emporte.",
    "legal_forms_accepted": "Catégories juridiques (5499, ou un préfixe : 57 pour toutes les SAS).",
    "activities_accepted": "Parmi : " + ", ".join(ACTIVITY_NATURES) + ".",
    "excluded_communes": "Codes INSEE séparés par des espaces.",
}


def _subjects_query():
    return db.session.query(Subject).join(Theme).order_by(Theme.position, Subject.position)


def _holder_text(view: Any, context: Any, model: RoutingFilter, name: str) -> str:
    return model.holder_text


def _subjects_text(view: Any, context: Any, model: RoutingFilter, name: str) -> str:
    return ", ".join(sorted(link.subject.label for link in model.subject_links)) or "Tous les sujets"


def _criteria_text(view: Any, context: Any, model: RoutingFilter, name: str) -> str:
    """The criteria the filter sets, in words (« Effectif minimum : 10 ; Natures… : artisanale »)."""
    parts = [
        f"{FIELD_LABELS[column]} : {getattr(model, column)}"
        for column in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)
        if getattr(model, column) not in (None, "")
    ]
    return " ; ".join(parts)


class RoutingFilterView(SecureModelView):
    """« Filtres de mise en relation »: staff edit all of them, referents those of their scope;
    the institution, antenne and expert pages link here with the holder prefilled."""

    referent_access = "write"
    column_list = ["id", "holder", "subjects", "criteria", "updated_at"]
    column_details_list = ["id", "holder", "subjects", "criteria", "created_at", "updated_at"]
    column_labels = {
        "id": "N°",
        "holder": "Appartient à",
        "subjects": "Sujets",
        "criteria": "Critères",
        "created_at": "Créé le",
        "updated_at": "Modifié le",
        "institution": "Institution",
        "antenne": "Antenne",
        "expert": "Expert",
        "filter_subjects": "Sujets concernés",
        **FIELD_LABELS,
    }
    column_formatters = {"holder": _holder_text, "subjects": _subjects_text, "criteria": _criteria_text}
    column_formatters_export = column_formatters
    column_default_sort = ("id", True)
    column_filters = [
        IntEqualFilter(RoutingFilter.institution_id, "Institution", options=LazyOptions(institution_options)),
        IntEqualFilter(RoutingFilter.antenne_id, "Antenne (n°)"),
        IntEqualFilter(RoutingFilter.expert_id, "Expert (n°)"),
    ]
    list_loader_options = (
        lambda: selectinload(RoutingFilter.institution),
        lambda: selectinload(RoutingFilter.antenne).selectinload(Antenne.institution),
        lambda: selectinload(RoutingFilter.expert),
        lambda: selectinload(RoutingFilter.subject_links).selectinload(RoutingFilterSubject.subject),
    )
    form_columns = ["institution", "antenne", "expert", "filter_subjects", *NUMBER_COLUMNS, *CODE_LIST_COLUMNS]
    form_args = {
        "institution": {
            "label": "Institution",
            "description": "Choisissez une seule case parmi institution, antenne et expert.",
            "query_factory": lambda: (
                db.session.query(Institution).filter(Institution.deleted_at.is_(None)).order_by(Institution.name)
            ),
        },
        "antenne": {"label": "Antenne"},
        "expert": {"label": "Expert"},
        **{
            name: {"label": FIELD_LABELS[name], "description": _CRITERIA_HINTS.get(name, "")}
            for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)
        },
    }
    form_ajax_refs = {"antenne": antenne_lookup(), "expert": expert_lookup()}
    form_extra_fields = {
        "filter_subjects": QuerySelectMultipleField(
            "Sujets concernés",
            query_factory=_subjects_query,
            get_label=lambda s: f"{s.theme.label} — {s.label}",
            description="Aucun sujet choisi : le filtre s'applique à tous les sujets.",
        )
    }

    def create_form(self, obj: Any = None):
        """« Ajouter un filtre » from an institution, antenne or expert page comes with its holder."""
        form = super().create_form(obj)
        if request.method == "GET":
            for name, model in (("institution", Institution), ("antenne", Antenne), ("expert", Expert)):
                ident = request.args.get(f"{name}_id", type=int)
                if ident is not None:
                    found = db.session.scalar(
                        policy.scope_query(current_user, model, select(model).where(model.id == ident))
                    )  # out of scope: nothing prefilled
                    if found is not None:
                        getattr(form, name).data = found
        return form

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        if request.method == "GET":
            form.filter_subjects.data = self.get_one(id).subjects

    def on_model_change(self, form: Any, model: RoutingFilter, is_created: bool) -> None:
        raw = {name: getattr(model, name) for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)}
        try:
            apply_filter(model, raw, list(form.filter_subjects.data or []))
        except ServiceError as error:
            form.filter_subjects.errors = [*form.filter_subjects.errors, str(error)]
            raise


# ---------------------------------------------------------------- questions and expected answers


def _choices_text(view: Any, context: Any, model: SubjectQuestion, name: str) -> str:
    return " / ".join(model.choices or [])


class ChoicesField(StringField):
    """The answers offered, typed ``Oui | Non``; empty for a yes/no question."""

    def _value(self) -> str:
        if isinstance(self.data, list):
            return " | ".join(self.data)
        return self.data or ""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.raw_text = valuelist[0] if valuelist else ""
        try:
            self.data = parse_choices(self.raw_text)
        except ServiceError as error:
            self.data = []
            raise ValueError(str(error)) from error


class SubjectQuestionView(SecureModelView):
    """The questions a subject asks on its public form (staff only: the catalog is theirs)."""

    column_list = ["subject", "key", "label", "choices", "position"]
    column_labels = {
        "subject": "Sujet",
        "subject.label": "Sujet",
        "key": "Clé",
        "label": "Question",
        "choices": "Réponses possibles",
        "position": "Ordre",
        "created_at": "Créée le",
    }
    column_formatters = {"choices": _choices_text}
    column_filters = [IntEqualFilter(SubjectQuestion.subject_id, "Sujet", options=LazyOptions(subject_options))]
    list_loader_options = (lambda: selectinload(SubjectQuestion.subject),)
    column_searchable_list = ["label", "key"]
    form_columns = ["subject", "key", "label", "choices", "position"]
    form_overrides = {"choices": ChoicesField}
    form_args = {
        "subject": {
            "label": "Sujet",
            "query_factory": _subjects_query,
            "validators": [DataRequired("Choisissez le sujet.")],
        },
        "key": {
            "label": "Clé",
            "description": "Nom court et stable (lettres, chiffres, tirets) : les réponses attendues y renvoient.",
            "validators": [DataRequired("Indiquez une clé.")],
        },
        "label": {"label": "Question", "validators": [DataRequired("Indiquez la question posée.")]},
        "choices": {
            "label": "Réponses possibles",
            "description": "Séparées par « | » (Moins de 10 | 10 à 49 | 50 et plus) ; vide : Oui | Non.",
        },
        "position": {"label": "Ordre"},
    }

    def on_model_change(self, form: Any, model: SubjectQuestion, is_created: bool) -> None:
        from app.services.reference.questions import check_question

        check_question(model)


class ExpectationField(TextAreaField):
    """One combination of answers, ``clé = Réponse`` per line, as JSON in the model."""

    def _value(self) -> str:
        if isinstance(self.data, dict):
            return "\n".join(f"{key} = {value}" for key, value in self.data.items())
        return self.data or ""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.raw_text = valuelist[0] if valuelist else ""
        self.data = self.raw_text


class OfferExpectationView(SecureModelView):
    """The combinations of answers an institution takes on a subject (no combination: all)."""

    referent_access = "write"
    column_list = ["offer", "answers"]
    column_labels = {"offer": "Offre (sujet, institution)", "answers": "Réponses prises", "created_at": "Créée le"}
    column_formatters = {"answers": lambda v, c, m, n: str(m)}
    column_formatters_export = column_formatters
    list_loader_options = (
        lambda: selectinload(OfferExpectation.offer).selectinload(InstitutionSubject.institution),
        lambda: selectinload(OfferExpectation.offer).selectinload(InstitutionSubject.subject),
    )
    form_columns = ["offer", "answers"]
    form_overrides = {"answers": ExpectationField}
    form_args = {
        "offer": {
            "label": "Offre (sujet, institution)",
            "query_factory": lambda: db.session.query(InstitutionSubject).order_by(InstitutionSubject.id),
            "validators": [DataRequired("Choisissez l'offre.")],
        },
        "answers": {
            "label": "Réponses prises",
            "description": "Une ligne par question : « clé = Réponse ». Une question non nommée accepte toute réponse.",
        },
    }

    def on_model_change(self, form: Any, model: OfferExpectation, is_created: bool) -> None:
        text = model.answers if isinstance(model.answers, str) else json.dumps(model.answers)
        try:
            model.answers = parse_expectation(model.offer, text)
        except ServiceError as error:
            form.answers.errors = [*form.answers.errors, str(error)]
            raise


def register(admin: Admin) -> None:
    admin.add_view(
        RoutingFilterView(
            RoutingFilter, db, name="Filtres de mise en relation", category="Annuaire", endpoint="routing_filter"
        )
    )
    admin.add_view(
        OfferExpectationView(
            OfferExpectation, db, name="Réponses attendues", category="Annuaire", endpoint="offer_expectation"
        )
    )
    admin.add_view(
        SubjectQuestionView(
            SubjectQuestion, db, name="Questions des sujets", category="Catalogue", endpoint="subject_question"
        )
    )
