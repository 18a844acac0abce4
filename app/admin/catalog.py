"""Back-office views of the catalog: themes and subjects, archived through ``services.catalog``.

Referents read the catalog (``referent_access = "read"``): they choose their experts' subjects
and their institution's offer from it, and the address book import names subjects by slug.
"""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import IntEqualFilter
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms.validators import Regexp

from app.admin.base import SecureModelView
from app.admin.filters import DeletedFilter, LazyOptions
from app.extensions import db
from app.models import Subject, Theme
from app.services.reference.catalog import archive_subject, unarchive_subject

SLUG_VALIDATOR = Regexp(r"^[a-z0-9]+(?:-[a-z0-9]+)*$", message="Minuscules, chiffres et tirets seulement.")


def theme_options() -> list[tuple[str, str]]:
    return [(str(i), label) for i, label in db.session.execute(select(Theme.id, Theme.label).order_by(Theme.position))]


class ThemeView(SecureModelView):
    referent_access = "read"
    column_list = ["position", "slug", "label", "archived_at"]
    column_details_list = ["position", "slug", "label", "archived_at", "created_at"]
    column_labels = {
        "position": "Position",
        "slug": "Identifiant",
        "label": "Libellé",
        "archived_at": "Archivé le",
        "created_at": "Créé le",
    }
    column_searchable_list = ["slug", "label"]
    column_filters = [DeletedFilter(Theme.archived_at, "Archivé")]
    column_default_sort = "position"
    form_columns = ["slug", "label", "position"]
    form_args = {
        "slug": {"label": "Identifiant", "validators": [SLUG_VALIDATOR]},
        "label": {"label": "Libellé"},
        "position": {"label": "Position"},
    }


class SubjectView(SecureModelView):
    referent_access = "read"
    column_list = ["theme", "position", "slug", "label", "archived_at"]
    column_details_list = ["theme", "position", "slug", "label", "archived_at", "created_at"]
    column_labels = {
        "theme": "Thème",
        "theme.label": "Thème",
        "position": "Position",
        "slug": "Identifiant",
        "label": "Libellé",
        "archived_at": "Archivé le",
        "created_at": "Créé le",
    }
    column_sortable_list = [("theme", "theme.position"), "position", "slug", "label", "archived_at"]
    column_searchable_list = ["slug", "label"]
    column_filters = [
        IntEqualFilter(Subject.theme_id, "Thème", options=LazyOptions(theme_options)),
        DeletedFilter(Subject.archived_at, "Archivé"),
    ]
    column_default_sort = "position"
    list_loader_options = (lambda: selectinload(Subject.theme),)
    form_columns = ["theme", "slug", "label", "position"]
    form_args = {
        "theme": {"label": "Thème", "query_factory": lambda: db.session.query(Theme).order_by(Theme.position)},
        "slug": {"label": "Identifiant", "validators": [SLUG_VALIDATOR]},
        "label": {"label": "Libellé"},
        "position": {"label": "Position"},
    }

    @action("archiver", "Archiver", "Archiver les sujets sélectionnés ? Ils ne seront plus proposés ni routés.")
    def action_archive(self, ids: list[str]) -> None:
        self.run_action(ids, archive_subject, "{count} sujet(s) archivé(s).")

    @action("desarchiver", "Désarchiver")
    def action_unarchive(self, ids: list[str]) -> None:
        self.run_action(ids, unarchive_subject, "{count} sujet(s) désarchivé(s).")

    def on_model_change(self, form: Any, model: Subject, is_created: bool) -> None:
        model.slug = (model.slug or "").strip()


def register(admin: Admin) -> None:
    admin.add_view(ThemeView(Theme, db, name="Thèmes", category="Catalogue", endpoint="theme"))
    admin.add_view(SubjectView(Subject, db, name="Sujets", category="Catalogue", endpoint="subject"))
