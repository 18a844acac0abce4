"""« Mes exports »: the files a staff member asked for from the request lists, their progress,
and their download while they last (``services/requests/exports.py`` keeps and guards them,
``export_builder.py`` builds them).

The request lists post their own URL arguments here (``admin/list.html``), so the file holds
the rows of the list as it was on screen: search, filters, sort and the desk's tab.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import parse_qsl

from flask import abort, flash, jsonify, redirect, request, send_file, url_for
from flask_admin import Admin, expose
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from app import policy
from app.admin.base import SecureBaseView
from app.admin.export_builder import list_view_for
from app.admin.formatters import paris_time
from app.extensions import db
from app.models import EXPORT_KIND_LABELS, EXPORT_STATE_LABELS, Export, PartnerReport
from app.models.desk import ExportState
from app.services.errors import NotFound, ServiceError
from app.services.requests import desk
from app.services.requests import exports as service
from app.services.statistics.reports import XLSX_MIMETYPE, period_label, reports_for
from app.services.transactions import transaction

# The request lists' URL arguments are posted as one query string, so no list argument can
# collide with the form's own fields.
QUERY_FIELD = "query"


def _describe_filter(view: Any, name: str, value: str, options: dict) -> str | None:
    """« Statut est « Prise en charge » » for a ``flt0_<arg>`` argument of ``view``."""
    _position, _sep, arg = name[3:].partition("_")
    found = (getattr(view, "_filter_args", None) or {}).get(arg)
    if found is None:
        return None
    _index, flt = found
    label = value
    if flt.options:
        # Some options are read from the database (LazyOptions): once per page, not per row.
        key = (view.endpoint, arg)
        if key not in options:
            options[key] = {str(option): str(text) for option, text in flt.options}
        label = options[key].get(value, value)
    return f"{flt.name} {flt.operation()} « {label} »"


def describe_params(kind: str, params: dict[str, str], options: dict | None = None) -> list[str]:
    """The criteria of the list the file was made from, as staff read them."""
    options = {} if options is None else options
    try:
        view = list_view_for(kind)
    except ServiceError:
        view = None
    parts = []
    for name, value in params.items():
        if name == "search" and value:
            parts.append(f"Recherche « {value} »")
        elif name == "onglet":
            tab = next((tab.label for tab in desk.TABS if tab.slug == value), None)
            if tab:
                parts.append(f"Onglet « {tab} »")
        elif name.startswith("flt") and view is not None:
            text = _describe_filter(view, name, value, options)
            if text:
                parts.append(text)
        elif name == "sort" and view is not None and value.isdigit():
            column = view._get_column_by_idx(int(value))
            if column:
                order = "décroissant" if params.get("desc") == "1" else "croissant"
                parts.append(f"Tri par « {column[1]} » ({order})")
    return parts


class ExportsView(SecureBaseView):
    """The person's own exports only: the service refuses anyone else's."""

    # Referents export their own scope: the page reads, and asking for a file is the one POST
    # they may make here (the service asks the policy whether they may export that list, and
    # the file is built through the list's scoped query as them).
    referent_access = "read"
    referent_endpoints = ("request_view", "report_download")

    @property
    def extra_js(self) -> list[str]:
        return [url_for("static", filename="admin/exports.js")]

    @property
    def extra_css(self) -> list[str]:
        return [url_for("static", filename="admin/exports.css")]

    def _user(self):
        return current_user._get_current_object()

    def row(self, export: Export, options: dict | None = None, *, details: bool = True) -> dict[str, Any]:
        """An export as the page shows it; the status endpoint, polled every second or two,
        leaves out the criteria (``details``)."""
        expired = service.is_expired(export)
        total = export.rows_total
        done = export.rows_done or 0
        percent = int(done * 100 / total) if total else (100 if export.state == ExportState.DONE else 0)
        ready = export.state == ExportState.DONE and not expired
        row = {
            "id": export.id,
            "kind": export.kind,
            "kind_label": EXPORT_KIND_LABELS.get(export.kind, export.kind),
            "format_label": service.FORMAT_LABELS.get(export.format, export.format),
            "state": "expired" if expired else export.state,
            "state_label": "Expiré" if expired else EXPORT_STATE_LABELS.get(export.state, export.state),
            "pending": export.state in (ExportState.QUEUED, ExportState.RUNNING) and not expired,
            "rows_done": done,
            "rows_total": total,
            "percent": percent,
            "progress_text": self.progress_text(export.state, done, total),
            "created_at": paris_time(export.created_at),
            "expires_at": paris_time(export.expires_at),
            "error": export.error if export.state == ExportState.FAILED else None,
            "filename": export.filename,
            "download_url": url_for(".download", export_id=export.id) if ready else None,
            "status_url": url_for(".status", export_id=export.id),
        }
        if details:
            row["criteria"] = describe_params(export.kind, export.params or {}, options)
            row["list_url"] = self.list_url(export.kind, export.params or {})
        return row

    @staticmethod
    def progress_text(state: str, done: int, total: int | None) -> str:
        if state == ExportState.QUEUED:
            return "En attente de démarrage"
        if total is None:
            return "Préparation…"
        if state == ExportState.DONE:
            return f"{total} ligne(s)"
        return f"{done} / {total} ligne(s)"

    @staticmethod
    def list_url(kind: str, params: dict[str, str]) -> str | None:
        try:
            view = list_view_for(kind)
        except ServiceError:
            return None
        return url_for(f"{view.endpoint}.index_view", **params)

    @expose("/")
    def index(self):
        options: dict = {}
        rows = [self.row(export, options) for export in service.exports_of(self._user())]
        return self.render(
            "admin/exports.html",
            rows=rows,
            pending=any(row["pending"] for row in rows),
            lifetime_days=service.EXPORT_LIFETIME.days,
            reports=reports_for(self._user()),
            report_period=period_label,
        )

    @expose("/demander", methods=("POST",))
    def request_view(self):
        kind = request.form.get("kind", "")
        fmt = request.form.get("format", "")
        params = MultiDict(parse_qsl(request.form.get(QUERY_FIELD, ""), keep_blank_values=True)).to_dict()
        try:
            if kind in EXPORT_KIND_LABELS and not policy.can_export(self._user(), list_view_for(kind)):
                raise ServiceError("Vous n'avez pas accès à cette liste.")
            with transaction():  # the export is handed to its job once committed
                export = service.request_export(self._user(), kind, fmt, params)
        except ServiceError as error:
            flash(f"Export impossible : {error}", "error")
            back = self.list_url(kind, service.clean_params(params)) if kind in EXPORT_KIND_LABELS else None
            return redirect(back or url_for(".index"), 303)
        label = EXPORT_KIND_LABELS[kind]
        if export.state == ExportState.DONE:
            flash(f"Votre export « {label} » ({fmt.upper()}) est prêt.", "success")
        elif export.state == ExportState.FAILED:
            flash(f"Votre export « {label} » a échoué : {export.error}", "error")
        else:
            flash(
                f"Export « {label} » ({fmt.upper()}) demandé : suivez sa préparation ci-dessous, "
                "le fichier sera téléchargeable ici.",
                "success",
            )
        return redirect(url_for(".index", _anchor=f"export-{export.id}"), 303)

    @expose("/<int:export_id>/etat")
    def status(self, export_id: int):
        try:
            export = service.export_of(export_id, self._user())
        except NotFound:
            abort(404)
        response = jsonify(self.row(export, details=False))
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/<int:export_id>/fichier")
    def download(self, export_id: int):
        try:
            file = service.export_for_download(export_id, self._user())
        except NotFound:
            abort(404)
        except ServiceError as error:
            flash(str(error), "error")
            return redirect(url_for(".index"), 303)
        response = send_file(
            io.BytesIO(file.content),
            mimetype=file.mimetype,
            as_attachment=True,
            download_name=file.filename,
            max_age=0,
        )
        # Personal data: no shared cache keeps a copy.
        response.headers["Cache-Control"] = "private, no-store"
        return response

    @expose("/rapports/<int:report_id>")
    def report_download(self, report_id: int):
        """A quarterly report, for whom ``reports_for`` offers it (others: 404)."""
        allowed = {report.id for report in reports_for(self._user())}
        if report_id not in allowed:
            abort(404)
        report = db.session.get(PartnerReport, report_id)
        response = send_file(
            io.BytesIO(report.content),
            mimetype=XLSX_MIMETYPE,
            as_attachment=True,
            download_name=report.filename,
            max_age=0,
        )
        response.headers["Cache-Control"] = "private, no-store"
        return response


def register(admin: Admin) -> None:
    admin.add_view(ExportsView(name="Mes exports", category="Demandes", endpoint="exports", url="exports"))
