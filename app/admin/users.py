"""Back-office views of accounts and of the audit journal.

Staff invite people rather than choose passwords for them: the create form's password is
optional and, left empty, ``services.accounts.invite_user`` emails a link to choose one. The
list shows each account's role, scope and state (invited, active, locked), with actions to
resend the invitation, send a reset link and unlock. The hash is never shown or exported. The
journal is read-only.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_admin import Admin
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual, FilterLike, IntEqualFilter
from flask_admin.menu import MenuLink
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms import PasswordField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from app.admin.base import ReadOnlyModelView, SecureModelView
from app.admin.fields import antenne_lookup
from app.admin.filters import DeletedFilter, LazyOptions
from app.extensions import db
from app.models import ROLE_LABELS, Antenne, AuditEvent, Institution, User
from app.models.base import utcnow
from app.services.accounts.accounts import account_state, invite_user, resend_invitation, send_password_reset, unlock
from app.services.accounts.passwords import check_password
from app.services.accounts.users import (
    check_scope,
    create_user,
    delete_user,
    forget_failures,
    hash_password,
    normalize_email,
)
from app.services.audit import tracked_models
from app.services.errors import ServiceError
from app.services.transactions import transaction

ROLE_CHOICES = list(ROLE_LABELS.items())
ACTION_LABELS = {"create": "création", "update": "modification", "delete": "suppression", "api_call": "appel d'API"}


def _state(_view: Any, _context: Any, model: User, _name: str) -> str:
    return account_state(model)


def _acting_user() -> User:
    return current_user._get_current_object()


class UserView(SecureModelView):
    column_list = ["email", "full_name", "role", "institution", "antenne", "state", "last_login_at", "deleted_at"]
    column_details_list = [
        "email",
        "full_name",
        "role",
        "institution",
        "antenne",
        "state",
        "invited_at",
        "invited_by",
        "password_changed_at",
        "failed_logins",
        "last_login_at",
        "created_at",
        "deleted_at",
    ]
    column_formatters = {"state": _state}
    column_formatters_export = {"state": _state}
    column_formatters_detail = {"state": _state}
    column_labels = {
        "email": "Email",
        "full_name": "Nom",
        "role": "Rôle",
        "institution": "Institution",
        "institution.name": "Institution",
        "antenne": "Antenne",
        "last_login_at": "Dernière connexion",
        "created_at": "Créé le",
        "deleted_at": "Supprimé le",
        "state": "État",
        "invited_at": "Invité le",
        "invited_by": "Invité par",
        "password_changed_at": "Mot de passe changé le",
        "failed_logins": "Échecs de connexion consécutifs",
        "password": "Mot de passe",
        "new_password": "Nouveau mot de passe",
    }
    column_choices = {"role": ROLE_CHOICES}
    column_sortable_list = ["email", "full_name", "role", "last_login_at", ("institution", "institution.name")]
    column_searchable_list = ["email", "full_name"]
    column_filters = [
        FilterEqual(User.role, "Rôle", options=ROLE_CHOICES),
        DeletedFilter(User.deleted_at, "Supprimé"),
    ]
    column_default_sort = "email"
    column_details_exclude_list = ["password_hash"]
    column_export_exclude_list = ["password_hash"]
    list_loader_options = (
        lambda: selectinload(User.institution),
        lambda: selectinload(User.antenne).selectinload(Antenne.institution),
    )
    form_columns = ["email", "full_name", "role", "institution", "antenne", "password", "new_password"]
    form_args = {
        "email": {"label": "Email"},
        "full_name": {"label": "Nom"},
        "institution": {
            "label": "Institution",
            "description": "Obligatoire pour un référent (ou une antenne).",
            "query_factory": lambda: (
                db.session.query(Institution).filter(Institution.deleted_at.is_(None)).order_by(Institution.name)
            ),
        },
        "antenne": {"label": "Antenne"},
    }
    form_ajax_refs = {"antenne": antenne_lookup()}
    form_extra_fields = {
        "role": SelectField(
            "Rôle", choices=[SelectChoice(value, label) for value, label in ROLE_CHOICES], default="admin"
        ),
        "password": PasswordField(
            "Mot de passe (facultatif)",
            validators=[Optional()],
            description="Laissez vide (recommandé) : une invitation est envoyée par email pour que la personne "
            "choisisse elle-même son mot de passe.",
        ),
        "new_password": PasswordField(
            "Nouveau mot de passe", validators=[Optional()], description="Laissez vide pour garder l'actuel."
        ),
    }

    def get_create_form(self):
        form_class = self.get_form()
        del form_class.new_password
        return form_class

    def get_edit_form(self):
        form_class = self.get_form()
        del form_class.password
        return form_class

    def create_model(self, form: Any) -> User | bool:
        """Without a password: an invitation (``invite_user``); with one: ``create_user`` and the
        password policy. Either way the account rules live in the services."""
        try:
            with transaction():
                if form.password.data:
                    user = create_user(
                        form.email.data or "",
                        role=form.role.data,
                        password=form.password.data,
                        full_name=form.full_name.data or None,
                        institution_slug=form.institution.data.slug if form.institution.data else None,
                        antenne_id=form.antenne.data.id if form.antenne.data else None,
                    )
                else:
                    user = invite_user(
                        form.email.data or "",
                        form.role.data,
                        form.institution.data,
                        form.antenne.data,
                        by=_acting_user(),
                        full_name=form.full_name.data or None,
                    )
                    flash(f"Invitation envoyée à {user.email}.", "success")
        except ServiceError as error:
            flash(str(error), "error")
            return False
        self.after_model_change(form, user, True)
        return user

    def on_model_change(self, form: Any, model: User, is_created: bool) -> None:
        model.email = normalize_email(model.email or "")
        check_scope(model)
        new_password = getattr(form, "new_password", None)
        if new_password is not None and new_password.data:
            check_password(new_password.data, model)
            model.password_hash = hash_password(new_password.data)
            model.password_changed_at = utcnow()
            forget_failures(model)

    @action(
        "renvoyer_invitation",
        "Renvoyer l'invitation",
        "Renvoyer l'invitation aux comptes sélectionnés ? Les liens envoyés précédemment ne serviront plus.",
    )
    def action_resend_invitation(self, ids: list[str]) -> None:
        by = _acting_user()
        self.run_action(ids, lambda user: resend_invitation(user, by=by), "{count} invitation(s) renvoyée(s).")

    @action(
        "lien_reinitialisation",
        "Envoyer un lien de réinitialisation",
        "Envoyer un lien de réinitialisation du mot de passe aux comptes sélectionnés ?",
    )
    def action_send_reset(self, ids: list[str]) -> None:
        self.run_action(ids, send_password_reset, "{count} lien(s) de réinitialisation envoyé(s).")

    @action("deverrouiller", "Déverrouiller", "Déverrouiller les comptes sélectionnés ?")
    def action_unlock(self, ids: list[str]) -> None:
        self.run_action(ids, unlock, "{count} compte(s) déverrouillé(s).")

    @action(
        "supprimer", "Supprimer", "Supprimer les comptes sélectionnés ? Leurs données personnelles seront effacées."
    )
    def action_delete(self, ids: list[str]) -> None:
        self.run_action(ids, delete_user, "{count} compte(s) supprimé(s).")


class AuditEventView(ReadOnlyModelView):
    """Who changed what: read-only, newest first."""

    details_template = "admin/model/details.html"
    column_list = ["created_at", "actor", "action", "object_type", "object_id", "changes"]
    column_labels = {
        "created_at": "Date",
        "actor": "Par",
        "action": "Action",
        "object_type": "Type d'objet",
        "object_id": "Identifiant",
        "changes": "Champs modifiés",
    }
    column_choices = {"action": list(ACTION_LABELS.items())}
    column_searchable_list = ["actor", "object_type"]
    column_filters = [
        FilterEqual(
            AuditEvent.object_type,
            "Type d'objet",
            options=LazyOptions(lambda: [(m.__name__, m.__name__) for m in tracked_models()]),
        ),
        FilterEqual(AuditEvent.action, "Action", options=list(ACTION_LABELS.items())),
        FilterLike(AuditEvent.actor, "Par"),
        IntEqualFilter(AuditEvent.object_id, "Identifiant"),
    ]
    column_default_sort = ("created_at", True)
    column_formatters = {
        "changes": lambda v, c, m, n: "; ".join(
            f"{field} : {values[0] if values[0] is not None else '∅'} → {values[1] if values[1] is not None else '∅'}"
            for field, values in (m.changes or {}).items()
        )
    }

    def history(self, model: Any) -> list:
        return []


def register(admin: Admin) -> None:
    admin.add_view(UserView(User, db, name="Utilisateurs", category="Administration", endpoint="user"))
    admin.add_view(AuditEventView(AuditEvent, db, name="Journal", category="Administration", endpoint="journal"))
    # Every logged-in person's own page (role, scope, password), outside the policy's views.
    admin.add_link(MenuLink(name="Mon compte", endpoint="auth.account"))
