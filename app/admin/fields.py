"""Form fields of the back office that Flask-Admin does not provide.

The zone editor is a plain text input holding space-separated territory references
(``region:84 departement:69`` or ``national``), so it works without JavaScript; with it,
``static/admin/zone_editor.js`` turns it into a select2 autocomplete backed by the view's
``territoires`` endpoint (a 35,000-option select would be unusable).

Relation autocompletes (Flask-Admin's ``ajax/lookup``) go through
:class:`ScopedQueryAjaxModelLoader`: both the suggestions and the value a form posts back are
read through the policy's scope, so a referent can neither see nor pick another
institution's antenne, even by forging the id.
"""

from __future__ import annotations

import json
from typing import Any

from flask import has_request_context, url_for
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_login import current_user
from markupsafe import Markup
from wtforms import StringField
from wtforms.widgets import TextInput

from app import policy
from app.extensions import db
from app.models import Antenne, Expert
from app.models.base import parse_pk
from app.services.errors import ServiceError
from app.services.reference import geo

ZONE_HELP = (
    "Territoires séparés par des espaces : region:CODE, departement:CODE, epci:SIREN, commune:INSEE, "
    "ou le seul mot « national ». Exemple : « region:84 departement:69 »."
)


def zone_choices(text: str | None) -> list[dict[str, str]]:
    """The current value as ``[{"id", "text"}]`` so the autocomplete shows names, not codes."""
    try:
        spec = geo.parse_zone(text)
    except ServiceError:
        return []
    if spec.national:
        return [{"id": geo.NATIONAL, "text": "National"}]
    labels = geo.territory_labels(spec.references)
    return [{"id": f"{k}:{c}", "text": labels.get((k, c), f"{k}:{c}")} for k, c in spec.references]


class ZoneInput(TextInput):
    def __call__(self, field: Any, **kwargs: Any) -> Markup:
        kwargs.setdefault("data-role", "zone-editor")
        kwargs.setdefault("data-url", url_for(f".{field.lookup_endpoint}"))
        kwargs.setdefault("data-choices", json.dumps(zone_choices(field.data), ensure_ascii=False))
        kwargs.setdefault("placeholder", "national, ou region:84 departement:69 …")
        kwargs.setdefault("autocomplete", "off")
        return super().__call__(field, **kwargs)


class ZoneField(StringField):
    """A zone as text; the view hands it to ``addressbook.set_zone`` (never copied onto the model)."""

    widget = ZoneInput()

    def __init__(
        self, label: str | None = None, validators: Any = None, *, lookup_endpoint: str = "territories", **kwargs: Any
    ):
        kwargs.setdefault("description", ZONE_HELP)
        super().__init__(label, validators, **kwargs)
        self.lookup_endpoint = lookup_endpoint

    def process_formdata(self, valuelist: list[str]) -> None:
        # select2 joins the chosen ids with its separator; normalise to single spaces.
        self.data = " ".join((valuelist[0] if valuelist else "").replace(",", " ").split())

    def populate_obj(self, obj: Any, name: str) -> None:
        """Zones are rows, written by the service, not an attribute of the model."""


def _user() -> Any:
    # Outside a request nobody is logged in: the scope is then empty.
    return current_user if has_request_context() else None


class ScopedQueryAjaxModelLoader(QueryAjaxModelLoader):
    """An autocomplete over ``model`` that only suggests, and only accepts, rows in scope."""

    def get_query(self) -> Any:
        return policy.scope_query(_user(), self.model, super().get_query())

    def get_one(self, pk: Any) -> Any:
        from sqlalchemy import select

        ident = parse_pk(self.model, pk)
        if ident is None:
            return None  # a forged id is simply not a valid choice
        column = self.model.__mapper__.primary_key[0]
        with db.session.no_autoflush:
            return db.session.scalar(policy.scope_query(_user(), self.model, select(self.model).where(column == ident)))


def scoped_loader(loader: Any) -> Any:
    """The same autocomplete, scoped (views declaring plain loaders or option dicts get this)."""
    if not isinstance(loader, QueryAjaxModelLoader) or isinstance(loader, ScopedQueryAjaxModelLoader):
        return loader
    scoped = ScopedQueryAjaxModelLoader.__new__(ScopedQueryAjaxModelLoader)
    scoped.__dict__.update(loader.__dict__)
    return scoped


def antenne_lookup() -> QueryAjaxModelLoader:
    """Pick an antenne by typing its name: there are thousands, a plain select would not do."""
    return ScopedQueryAjaxModelLoader(
        "antenne",
        db,
        Antenne,
        fields=["name"],
        filters=["deleted_at IS NULL"],
        order_by=Antenne.name,
        page_size=10,
        minimum_input_length=2,
        placeholder="Tapez le nom de l'antenne",
    )


def expert_lookup() -> QueryAjaxModelLoader:
    """Pick an expert by typing their name or address (there are tens of thousands)."""
    return ScopedQueryAjaxModelLoader(
        "expert",
        db,
        Expert,
        fields=["full_name", "email"],
        filters=["deleted_at IS NULL"],
        order_by=Expert.full_name,
        page_size=10,
        minimum_input_length=2,
        placeholder="Tapez le nom ou l'adresse de l'expert",
    )
