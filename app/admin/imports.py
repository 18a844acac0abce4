"""The address book upload: preview first, then import exactly what was previewed.

The uploaded bytes stay on the server between the two steps, under a random token the
confirmation form carries back (and the session remembers), so what is imported is the
file that was checked, not a second upload, and no client-supplied path is ever opened.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from flask import current_app, flash, redirect, request, session, url_for
from flask_admin import Admin, expose
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import HiddenField
from wtforms.validators import InputRequired

from app.admin.base import SecureBaseView
from app.services.addressbook import COLUMNS, ImportReport, import_addressbook
from app.services.audit import acting_as

TEMPLATE = "admin/import.html"
SESSION_KEY = "addressbook_import_token"
TOKEN = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Previews never confirmed are swept when someone uploads again.
STALE_AFTER_SECONDS = 24 * 3600


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


def _upload_dir() -> Path:
    directory = Path(current_app.config.get("ADDRESSBOOK_IMPORT_DIR") or Path(current_app.instance_path) / "imports")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _path_for(token: str | None) -> Path | None:
    """The stored file of a well-formed token; anything else is refused before touching the disk."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        return None
    return _upload_dir() / f"{token}.csv"


def _store(raw: bytes) -> str:
    directory = _upload_dir()
    cutoff = time.time() - STALE_AFTER_SECONDS
    for old in directory.glob("*.csv"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    token = secrets.token_hex(16)
    (directory / f"{token}.csv").write_bytes(raw)
    return token


def _summary(report: ImportReport) -> str:
    return " ; ".join(report.lines()[1:])


class AddressbookImportView(SecureBaseView):
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

        report = import_addressbook(raw, dry_run=True)
        confirm = None
        if report.ok:
            token = _store(raw)
            session[SESSION_KEY] = token
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
        path = _path_for(token)
        if path is None or token != session.get(SESSION_KEY) or not path.is_file():
            flash("Cet aperçu n'est plus valable : déposez à nouveau le fichier.", "error")
            return redirect(url_for(".index"))
        raw = path.read_bytes()
        with acting_as(current_user.email, current_user.id):
            report = import_addressbook(raw)
        # One preview, one import: a second click must not import again.
        path.unlink(missing_ok=True)
        session.pop(SESSION_KEY, None)
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
