"""The one secure base of every back-office view (decision 4).

Access, row scoping and the audit trail live here; each view in ``app/admin/`` only
states what differs (columns, labels, filters). Anonymous visitors are sent to the login
page; logged-in users the policy refuses get a 403.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user
from sqlalchemy import select

from app import policy
from app.extensions import db


class SecureMixin:
    """Ask the policy before serving anything."""

    def is_accessible(self) -> bool:
        return policy.can_access_backoffice(current_user)

    def inaccessible_callback(self, name: str, **kwargs: Any):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)


class SecureIndexView(SecureMixin, AdminIndexView):
    @expose("/")
    def index(self):
        return self.render("admin/home.html")


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
    # The SQLAlchemy ModelView builds its own queries; these two add the policy's scope.

    def get_query(self):
        return policy.scope_query(current_user, self.model, super().get_query())

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

    def history(self, model: Any) -> list:
        from app.services.audit import history_for

        return history_for(model)

    def render(self, template: str, **kwargs: Any):
        if template == self.details_template and "model" in kwargs:
            kwargs["history"] = self.history(kwargs["model"])
        return super().render(template, **kwargs)
