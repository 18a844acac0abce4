"""The one secure base of every back-office view: no view decides access on its own.

Access, row scoping and the audit trail live here; each view in ``app/admin/`` only
states what differs (columns, labels, filters) and, for partner referents, its
``referent_access``. Every decision is the policy's (``app/policy.py``): anonymous visitors
are sent to the login page, logged-in users it refuses get a 403, and a record outside their
scope is a 404. Flask-Admin reads ``can_create`` and friends as attributes of a view shared by
every request: here they are properties that combine what the view declares with what the
policy grants the current user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import abort, current_app, flash, has_request_context, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.fields import QuerySelectField, QuerySelectMultipleField
from flask_admin.contrib.sqla.filters import FilterInList, FilterNotInList
from flask_login import current_user
from sqlalchemy import BigInteger, false, select

from app import policy
from app.admin.fields import scoped_loader
from app.admin.formatters import FORMATTERS
from app.extensions import db
from app.models.base import BIGINTEGER_MAX, INTEGER_MAX, parse_pk
from app.services.audit import history_for
from app.services.errors import ServiceError
from app.services.spreadsheets import safe_text
from app.services.transactions import transaction


class SecureMixin:
    """Ask the policy before serving anything.

    Each view states what a partner referent may do with it: ``"none"`` (the default: the
    view does not exist for them), ``"read"`` or ``"write"``; the policy decides, staff
    may do everything. An endpoint a view adds to Flask-Admin's own is staff's unless the
    view names it in ``referent_endpoints`` (see ``policy.can_call``).
    """

    referent_access: str = "none"
    referent_endpoints: tuple[str, ...] = ()

    def is_accessible(self) -> bool:
        return policy.can_access_view(current_user, self)

    def inaccessible_callback(self, name: str, **kwargs: Any):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def _handle_view(self, name: str, **kwargs: Any):
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        if not policy.can_call(current_user, self, name, request.method):
            abort(403)
        return None


class SecureBaseView(SecureMixin, BaseView):
    """A custom back-office page (an upload, a simulator): same access rules as the model views."""


# The rights Flask-Admin reads as attributes, what the policy says about each, and the
# endpoint each one opens.
_RIGHT_POLICIES: dict[str, Callable[[Any, Any], bool]] = {
    "can_create": policy.can_create,
    "can_edit": policy.can_edit,
    "can_delete": policy.can_delete,
    "can_export": policy.can_export,
}
_ENDPOINT_RIGHTS = {
    "create_view": "can_create",
    "edit_view": "can_edit",
    "delete_view": "can_delete",
    "export": "can_export",
    "ajax_update": "can_edit",
}


def _policy_right(name: str) -> property:
    """``can_create`` (…) as the current user may have it: never more than the view declares,
    and, within a request, only what the policy grants. Outside a request (when Flask-Admin
    builds its caches at registration) the declaration alone."""

    declared = f"_declared_{name}"

    def getter(self: Any) -> bool:
        if not getattr(self, declared):
            return False
        if not has_request_context():
            return True
        return _RIGHT_POLICIES[name](current_user, self)

    def setter(self: Any, value: bool) -> None:
        setattr(self, declared, value)

    return property(getter, setter)


_FIELD_ERRORS = {"Not a valid choice": "Ce choix ne fait pas partie des valeurs proposées."}


def _query_model(query: Any) -> type | None:
    descriptions = getattr(query, "column_descriptions", None) or []
    entity = descriptions[0].get("entity") if descriptions else None
    return entity if isinstance(entity, type) else None


# The longest filter value a list accepts: longer is no value a page offers.
MAX_FILTER_VALUE = 500


def _integer_bound(flt: Any) -> int | None:
    """The largest number the filter's column holds, or None for a column that is not an integer."""
    column = getattr(flt, "column", None)
    column_type = getattr(column, "type", None)
    try:
        if column_type is None or column_type.python_type is not int:
            return None
    except NotImplementedError:
        return None
    return BIGINTEGER_MAX if isinstance(column_type, BigInteger) else INTEGER_MAX


def _guarded_validate(flt: Any, validate: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A filter value is only one the page could have offered: within the filter's options when
    it has some (a referent's are their own scope's, so another institution's id is refused
    instead of telling them which needs it also received), a number the column can hold, and
    not longer than ``MAX_FILTER_VALUE``. Anything else is refused the way Flask-Admin refuses
    an invalid value: a message, and the list without that filter."""

    def guarded(value: Any) -> bool:
        text = str(value)
        if len(text) > MAX_FILTER_VALUE:
            return False
        parts = [p.strip() for p in text.split(",")] if isinstance(flt, FilterInList | FilterNotInList) else [text]
        options = flt.get_options(None) if flt.options is not None else None
        if options is not None:
            offered = {str(key) for key, _label in options}
            if any(part not in offered for part in parts):
                return False
        bound = _integer_bound(flt)
        if bound is not None:
            for part in parts:
                try:
                    if abs(int(part)) > bound:
                        return False
                except ValueError:
                    return False
        return validate(value)

    return guarded


class SecureModelView(SecureMixin, ModelView):
    """Model views: scoped queries, CSV export, French labels, the record's audit trail in details.

    A subclass declares ``can_create = False`` (…) as usual: the declaration is kept aside
    and the attribute stays the policy-aware property.
    """

    can_view_details = True
    _declared_can_create = True
    _declared_can_edit = True
    # Deletion is a soft delete through a service verb, offered by the views that allow it.
    _declared_can_delete = False
    _declared_can_export = True
    can_create = _policy_right("can_create")
    can_edit = _policy_right("can_edit")
    can_delete = _policy_right("can_delete")
    can_export = _policy_right("can_export")
    export_types = ["csv"]
    page_size = 50
    can_set_page_size = True
    details_template = "admin/details_with_history.html"
    list_template = "admin/list.html"
    column_type_formatters = FORMATTERS
    column_type_formatters_export = FORMATTERS
    column_type_formatters_detail = FORMATTERS
    # Loader options (``selectinload``…) for what the list columns show, so a page of 50
    # rows costs the same number of queries as a page of 5 (the query-count guard).
    list_loader_options: tuple[Callable[[], Any], ...] = ()
    # Flask-Admin's own eager loading (joinedload of listed relations) would clash with them.
    column_auto_select_related = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _RIGHT_POLICIES:
            value = cls.__dict__.get(name)
            if value is not None and not isinstance(value, property):
                setattr(cls, f"_declared_{name}", bool(value))
                delattr(cls, name)

    def _refresh_filters_cache(self) -> None:
        super()._refresh_filters_cache()
        for _index, flt in (self._filter_args or {}).values():
            if not getattr(flt, "guarded", False):
                flt.validate = _guarded_validate(flt, flt.validate)
                flt.guarded = True

    def _handle_view(self, name: str, **kwargs: Any):
        """A right the policy refuses is a 403 (a right the view never offers keeps
        Flask-Admin's redirect to the list, for everyone alike)."""
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        right = _ENDPOINT_RIGHTS.get(name)
        if right and not _RIGHT_POLICIES[right](current_user, self):
            abort(403)
        if name == "action_view" and not policy.can_run_action(current_user, self, request.form.get("action")):
            abort(403)
        return None

    def is_action_allowed(self, name: str) -> bool:
        if not super().is_action_allowed(name):
            return False
        return not has_request_context() or policy.can_run_action(current_user, self, name)

    # Writes: the record as it would be saved must stay in the user's scope, before the
    # view's own hook (which may write related rows) and after it.

    def _on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        right = policy.CREATE if is_created else policy.EDIT
        policy.check_record(current_user, model, right)
        super()._on_model_change(form, model, is_created)
        policy.check_record(current_user, model, right)

    def create_model(self, form: Any):
        with policy.guarded_writes(current_user):
            return super().create_model(form)

    def update_model(self, form: Any, model: Any):
        with policy.guarded_writes(current_user):
            return super().update_model(form, model)

    def delete_model(self, model: Any):
        with policy.guarded_writes(current_user):
            return super().delete_model(model)

    # Select lists and autocompletes offer only what the user may see.

    def create_form(self, obj: Any = None):
        return self.scope_form(super().create_form(obj))

    def edit_form(self, obj: Any = None):
        return self.scope_form(super().edit_form(obj))

    def scope_form(self, form: Any) -> Any:
        """Restrict every relation select of ``form`` (choices and accepted values) to the
        rows the policy lets the current user see."""
        for field in form:
            if isinstance(field, QuerySelectField) and (field.query is not None or field.query_factory):
                query = field.query if field.query is not None else field.query_factory()
                model = _query_model(query)
                field.query = (
                    policy.scope_query(current_user, model, query) if model is not None else query.where(false())
                )
                field._object_list = None
        return form

    def validate_form(self, form: Any) -> bool:
        """Flask-Admin's relation fields refuse a value outside their choices (a forged or
        out-of-scope id) in English, missing from its French catalog: say it in French.

        A multiple select notices an unknown value only once its data is read, which its own
        check does not do first: read it here, so an unknown value is refused, not dropped."""
        for field in form:
            if isinstance(field, QuerySelectMultipleField):
                field.data  # noqa: B018 - resolving the posted ids sets the field's error flag
        valid = super().validate_form(form)
        if not valid:
            for field in form:
                if isinstance(field.errors, list):
                    field.errors = [_FIELD_ERRORS.get(str(error), error) for error in field.errors]
        return valid

    def _process_ajax_references(self) -> dict[str, Any]:
        return {name: scoped_loader(loader) for name, loader in super()._process_ajax_references().items()}

    # Immediate CSV export: fine for a few thousand rows; a list that also has the prepared
    # export (``export_kind``, built by a job) sends larger ones there rather than holding a
    # web worker for minutes.
    export_kind: str | None = None

    def get_export_value(self, model: Any, name: Any) -> Any:
        """Flask-Admin's immediate export goes through the same cell rule as every file the
        service writes: text a spreadsheet would run as a formula stays text."""
        return safe_text(super().get_export_value(model, name))

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        limit = current_app.config.get("EXPORT_IMMEDIATE_MAX_ROWS", 10_000)
        if self.export_kind and export_type == "csv" and self.can_export:
            args = self._get_list_extra_args()
            sort_column = self._get_column_by_idx(args.sort)
            count, _ = self.get_list(
                0,
                sort_column[0] if sort_column is not None else None,
                args.sort_desc,
                args.search,
                args.filters,
                page_size=1,
            )
            if count > limit:
                flash(
                    f"Cette liste compte {count} lignes, au-delà des {limit} d'un export immédiat : "
                    "utilisez « Exporter en CSV » ou « Exporter en XLSX », préparés en arrière-plan.",
                    "warning",
                )
                return redirect(self.get_url(".index_view", **request.args))
        return super().export(export_type)

    # The SQLAlchemy ModelView builds its own queries; these two add the policy's scope.

    def get_query(self):
        query = policy.scope_query(current_user, self.model, super().get_query())
        options = [make() for make in self.list_loader_options]
        return query.options(*options) if options else query

    def get_count_query(self):
        return policy.scope_query(current_user, self.model, super().get_count_query())

    def get_one(self, id: Any):
        """Fetch through the scoped query, so a record outside the user's scope is a 404."""
        ident = parse_pk(self.model, id)
        if ident is None:
            abort(404)
        pk = self.model.__mapper__.primary_key[0]
        found = db.session.scalar(policy.scope_query(current_user, self.model, select(self.model).where(pk == ident)))
        if found is None:
            abort(404)
        return found

    def get_list(self, *args: Any, **kwargs: Any):
        count, rows = super().get_list(*args, **kwargs)
        if isinstance(rows, list) and rows:
            self.annotate(rows)
        return count, rows

    def annotate(self, rows: list[Any]) -> None:
        """Attach per-page figures (counts…) to ``rows`` with one query per figure, not per row."""

    def handle_view_exception(self, exc: Exception) -> bool:
        """A service refusal is a message for the person, not a crash."""
        if isinstance(exc, ServiceError):
            flash(str(exc), "error")
            return True
        return super().handle_view_exception(exc)

    def scoped_rows(self, ids: Iterable[str]) -> list[Any]:
        """The records an action was asked for, through the policy's scope."""
        pk = self.model.__mapper__.primary_key[0]
        idents = [parse_pk(self.model, i) for i in ids]
        if any(ident is None for ident in idents):
            abort(404)
        return list(
            db.session.scalars(policy.scope_query(current_user, self.model, select(self.model).where(pk.in_(idents))))
        )

    def run_action(self, ids: Iterable[str], verb: Callable[[Any], Any], done: str) -> None:
        """Apply a service verb to each selected record, each in its own transaction; each
        refusal is shown, the rest proceed."""
        succeeded = 0
        for row in self.scoped_rows(ids):
            label = str(row)  # read before a refusal expires it
            try:
                with transaction(), policy.guarded_writes(current_user):
                    verb(row)
                succeeded += 1
            except ServiceError as error:
                flash(f"{label} : {error}", "error")
        if succeeded:
            flash(done.format(count=succeeded), "success")

    def history(self, model: Any) -> list:
        return history_for(model)

    def render(self, template: str, **kwargs: Any):
        if template == self.details_template and "model" in kwargs:
            kwargs["history"] = self.history(kwargs["model"])
        return super().render(template, **kwargs)


class ReadOnlyModelView(SecureModelView):
    """What staff watch but never write by hand (requests, emails, the journal): their changes
    come from service verbs, offered as actions."""

    can_create = False
    can_edit = False
