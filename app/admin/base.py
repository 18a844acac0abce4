"""The one secure base of every back-office view (decision 4).

Access, row scoping and the audit trail live here; each view in ``app/admin/`` only
states what differs (columns, labels, filters). Anonymous visitors are sent to the login
page; logged-in users the policy refuses get a 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, flash, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import false, select

from app import policy
from app.extensions import db
from app.services.errors import ServiceError

PARIS = ZoneInfo("Europe/Paris")


def paris_time(value: datetime | None) -> str:
    """Dates as staff read them: Paris time, day first (stored in UTC)."""
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite gives back naive datetimes; they were written in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def shortened(text: str | None, limit: int) -> str:
    """Long free text (errors, reasons, notes) cut for a list cell; the details page shows it whole."""
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def preview_formatter(limit: int):
    """A list formatter showing the column's text shortened to ``limit`` characters."""
    return lambda _view, _context, model, name: shortened(getattr(model, name), limit)


def preformatted_formatter(_view: Any, _context: Any, model: Any, name: str) -> Markup:
    """Plain text (email bodies, replies) shown as written, escaped, lines kept."""
    return Markup('<pre style="white-space:pre-wrap">{}</pre>').format(escape(getattr(model, name) or ""))


def _format_datetime(_view: Any, value: datetime, *_args: Any) -> str:
    return paris_time(value)


def _format_bool(_view: Any, value: bool, *_args: Any) -> str:
    return "oui" if value else "non"


# French dates everywhere; booleans as words (readable in lists and in CSV exports alike).
FORMATTERS = {**DEFAULT_FORMATTERS, datetime: _format_datetime, bool: _format_bool}


class SecureMixin:
    """Ask the policy before serving anything.

    Each view states what a partner referent may do with it: ``"none"`` (the default: the
    view does not exist for them), ``"read"`` or ``"write"``; the policy decides, staff
    may do everything.
    """

    referent_access: str = "none"

    def is_accessible(self) -> bool:
        return policy.can_access_view(current_user, self)

    def inaccessible_callback(self, name: str, **kwargs: Any):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)


class SecureIndexView(SecureMixin, AdminIndexView):
    @expose("/")
    def index(self):
        from app.services.dashboard import age_text, dashboard_figures, dashboard_links

        figures = dashboard_figures()
        return self.render(
            "admin/home.html",
            figures=figures,
            links=dashboard_links(figures),
            oldest_age=age_text(figures["oldest_age"]),
        )


class SecureBaseView(SecureMixin, BaseView):
    """A custom back-office page (an upload, a simulator): same access rules as the model views."""


class SecureModelView(SecureMixin, ModelView):
    """Model views: scoped queries, CSV export, French labels, the record's audit trail in details."""

    can_view_details = True
    can_export = True
    export_types = ["csv"]
    page_size = 50
    can_set_page_size = True
    # Deletion is a soft delete through a service verb, offered by the views that allow it.
    can_delete = False
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

    # The SQLAlchemy ModelView builds its own queries; these two add the policy's scope.

    def get_query(self):
        query = policy.scope_query(current_user, self.model, super().get_query())
        options = [make() for make in self.list_loader_options]
        return query.options(*options) if options else query

    def get_count_query(self):
        return policy.scope_query(current_user, self.model, super().get_count_query())

    def get_one(self, id: Any):
        """Fetch through the scoped query, so a record outside the user's scope is a 404."""
        pk = self.model.__mapper__.primary_key[0]
        try:
            ident = pk.type.python_type(id)
        except (TypeError, ValueError):
            abort(404)
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
        try:
            idents = [pk.type.python_type(i) for i in ids]
        except (TypeError, ValueError):
            abort(404)
        return list(
            db.session.scalars(policy.scope_query(current_user, self.model, select(self.model).where(pk.in_(idents))))
        )

    def run_action(self, ids: Iterable[str], verb: Callable[[Any], Any], done: str) -> None:
        """Apply a service verb to each selected record; each refusal is shown, the rest proceed."""
        succeeded = 0
        for row in self.scoped_rows(ids):
            try:
                verb(row)
                succeeded += 1
            except ServiceError as error:
                db.session.rollback()
                flash(f"{row} : {error}", "error")
        if succeeded:
            flash(done.format(count=succeeded), "success")

    def history(self, model: Any) -> list:
        from app.services.audit import history_for

        return history_for(model)

    def render(self, template: str, **kwargs: Any):
        if template == self.details_template and "model" in kwargs:
            kwargs["history"] = self.history(kwargs["model"])
        return super().render(template, **kwargs)


class LazyOptions:
    """Filter options read from the database each time the list renders.

    Flask-Admin computes filter options once, when the view is registered (outside any
    application context); this iterable defers the query to rendering time.
    """

    def __init__(self, load: Callable[[], list[tuple[str, str]]]) -> None:
        self.load = load

    def __iter__(self):
        return iter(self.load())

    def __bool__(self) -> bool:
        return True


class DeletedFilter(BaseSQLAFilter):
    """« Supprimé(e) : oui / non » on a ``deleted_at`` column."""

    def __init__(self, column: Any, name: str = "Supprimé(e)") -> None:
        super().__init__(column, name, options=(("non", "non"), ("oui", "oui")))

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        column = self.get_column(alias)
        return query.filter(column.is_not(None) if value == "oui" else column.is_(None))

    def operation(self) -> str:
        return "est"


class InSubqueryFilter(BaseSQLAFilter):
    """Keep rows whose ``column`` is in the ids ``subquery(value)`` selects (value: an integer id).

    Used for filters that cross a relationship (an expert's institution, its subjects) without
    adding joins that would duplicate rows.
    """

    def __init__(self, column: Any, name: str, subquery: Callable[[int], Any], options: Any) -> None:
        super().__init__(column, name, options=options)
        self.subquery = subquery

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        try:
            ident = int(value)
        except (TypeError, ValueError):
            return query.filter(false())
        return query.filter(self.get_column(alias).in_(self.subquery(ident)))

    def operation(self) -> str:
        return "est"


class ReadOnlyModelView(SecureModelView):
    """What staff watch but never write by hand (requests, emails, the journal): their changes
    come from service verbs, offered as actions."""

    can_create = False
    can_edit = False
