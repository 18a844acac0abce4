"""The address book upload: preview first, then import exactly what was previewed.

The uploaded bytes are staged in the database between the two steps (``services.uploads``),
under a random token bound to the uploader, so what is imported is the file that was
checked, not a second upload, whichever web instance serves the confirmation.

Partner referents use the same page for their own experts: the import is limited to their
institution (or antenne), checked at the preview and again at the confirmation.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import HiddenField
from wtforms.validators import InputRequired

from app import policy
from app.admin.base import SecureBaseView
from app.models import Antenne
from app.services.addressbook.import_file import COLUMNS, ImportReport
from app.services.addressbook.importer import import_addressbook, scope_label
from app.services.addressbook.uploads import import_upload, stage_upload
from app.services.audit import acting_as
from app.services.errors import ServiceError
from app.services.transactions import transaction

TEMPLATE = "admin/import.html"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024


class UploadForm(FlaskForm):
    file = FileField(
        "Fichier CSV de l'annuaire",
        validators=[
            FileRequired("Choisissez un fichier CSV à importer."),
            FileAllowed(["csv"], "Le fichier doit être au format CSV (extension .csv)."),
        ],
    )


class ConfirmForm(FlaskForm):
    token = HiddenField(validators=[InputRequired()])


def _max_bytes() -> int:
    return int(current_app.config.get("ADDRESSBOOK_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def _summary(report: ImportReport) -> str:
    return " ; ".join(report.lines()[1:])


def _scope():
    """The current user's import scope (None for staff); a referent without one gets a 403."""
    try:
        return policy.referent_scope(current_user)
    except ServiceError:
        abort(403)


class AddressbookImportView(SecureBaseView):
    referent_access = "write"

    def render(self, template: str, **kwargs):
        scope = _scope()
        kwargs.setdefault("columns", COLUMNS)
        kwargs["scope_label"] = scope_label(scope) if scope is not None else None
        kwargs["scope_is_antenne"] = isinstance(scope, Antenne)
        return super().render(template, **kwargs)

    def create_blueprint(self, admin: Admin):
        blueprint = super().create_blueprint(admin)
        # A body over MAX_CONTENT_LENGTH is refused while the form is parsed (even by the CSRF
        # check, before the view runs): answer in French on this page rather than a bare 413.
        blueprint.register_error_handler(RequestEntityTooLarge, self._too_large)
        return blueprint

    def _too_large(self, _error: RequestEntityTooLarge):
        if not self.is_accessible():
            return self.inaccessible_callback("index")
        form = UploadForm(formdata=None)
        form.file.errors = [self._size_message()]
        return self.render(TEMPLATE, form=form, columns=COLUMNS), 413

    def _size_message(self) -> str:
        limit = _max_bytes()
        size = f"{limit // (1024 * 1024)} Mo" if limit >= 1024 * 1024 else f"{max(limit // 1024, 1)} Ko"
        return f"Le fichier dépasse la taille maximale de {size}."

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = UploadForm()
        if request.method != "POST":
            return self.render(TEMPLATE, form=form, columns=COLUMNS)
        if not form.validate_on_submit():
            return self.render(TEMPLATE, form=form, columns=COLUMNS), 422
        raw = form.file.data.read(_max_bytes() + 1)
        problem = None
        if len(raw) > _max_bytes():
            problem = self._size_message()
        elif not raw.strip():
            problem = "Le fichier est vide."
        if problem:
            form.file.errors = [problem]
            return self.render(TEMPLATE, form=form, columns=COLUMNS), 422

        report = import_addressbook(raw, dry_run=True, scope=_scope())
        confirm = None
        if report.ok:
            with transaction():
                token = stage_upload(raw, filename=form.file.data.filename or "annuaire.csv", user_id=current_user.id)
            confirm = ConfirmForm(formdata=None, token=token)
        return self.render(
            TEMPLATE,
            form=UploadForm(formdata=None),
            columns=COLUMNS,
            report=report,
            confirm=confirm,
            filename=form.file.data.filename,
        )

    @expose("/confirmer", methods=("POST",))
    def confirm(self):
        form = ConfirmForm()
        token = form.token.data if form.validate_on_submit() else None
        scope = _scope()
        with acting_as(current_user.email, current_user.id), policy.guarded_writes(current_user), transaction():
            report = import_upload(token, user_id=current_user.id, scope=scope)
        if report is None:
            flash("Cet aperçu n'est plus valable : déposez à nouveau le fichier.", "error")
            return redirect(url_for(".index"))
        if not report.ok:
            return self.render(
                TEMPLATE, form=UploadForm(formdata=None), columns=COLUMNS, report=report, stale=True
            ), 422
        flash(f"Annuaire importé : {_summary(report)}.", "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    admin.add_view(
        AddressbookImportView(
            name="Import d'annuaire", category="Annuaire", endpoint="addressbook_import", url="/admin/import"
        )
    )
