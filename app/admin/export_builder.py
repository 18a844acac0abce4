"""Building the file of an export (« Mes exports ») through the list's own back-office view.

Why through the view: the list *is* its view's configuration (search, filters, the desk's tab,
sorting, the policy's scope, the French labels, choice labels and formatters). Rebuilding it
from the view, inside a request context made of the saved URL arguments with the owner logged
in, keeps the file identical to the list even when the view changes; a second description of the
same list would drift. This is back-office code (it drives Flask-Admin); the export's record,
its states and its files are the service's (``services/requests/exports.py``), the cells' rules
``services/spreadsheets.py``. The job ``build_export_job`` calls :func:`build_export`.

Large lists: the ids are read first, in the list's order (one narrow query), then the rows are
loaded by batches of ids through the view's query (its loader options and the policy's scope
apply again), annotated like a page of the list, and written to a temporary file. No OFFSET, no
cursor left open between batches (so the progress, committed on its own connection after each
batch, is visible to the page even on SQLite), and the memory held is one batch plus the ids.

Safe to run twice: a ``done`` or ``failed`` export is left alone; a ``running`` one (its worker
died) is built again from the start.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from flask import current_app

from app import policy
from app.extensions import db
from app.models import EXPORT_KIND_LABELS, Export, User
from app.models.base import utcnow
from app.models.desk import ExportState
from app.services.errors import ServiceError
from app.services.requests.exports import (
    BATCH_SIZE,
    UNEXPECTED_ERROR,
    BuildJob,
    claim_build,
    export_filename,
    update_export,
)
from app.services.spreadsheets import WRITERS

log = logging.getLogger(__name__)


def list_view_for(kind: str) -> Any:
    """The back-office list view registered for ``kind`` (its ``export_kind``)."""
    admin = current_app.extensions.get("pde_admin")
    for view in getattr(admin, "_views", ()):
        if getattr(view, "export_kind", None) == kind:
            return view
    raise ServiceError("Cette liste ne peut pas être exportée.")


def build_export(export_id: int, *, batch_size: int = BATCH_SIZE) -> str:
    """Build the file of export ``export_id`` and return its final state (the job's body)."""
    job = claim_build(export_id)
    if isinstance(job, str):
        return job
    try:
        content, total = _build(job, batch_size)
    except ServiceError as error:
        update_export(
            job.id,
            Export.state == ExportState.RUNNING,
            state=ExportState.FAILED,
            error=str(error),
            finished_at=utcnow(),
        )
        return ExportState.FAILED
    except Exception as error:
        log.exception("export %s : échec inattendu", job.id)
        detail = f"{type(error).__name__}"
        update_export(
            job.id,
            Export.state == ExportState.RUNNING,
            state=ExportState.FAILED,
            error=UNEXPECTED_ERROR.format(detail=detail),
            finished_at=utcnow(),
        )
        return ExportState.FAILED
    update_export(
        job.id,
        Export.state == ExportState.RUNNING,
        state=ExportState.DONE,
        content=content,
        filename=export_filename(job.kind, job.format, job.created_at),
        rows_done=total,
        rows_total=total,
        error=None,
        finished_at=utcnow(),
    )
    log.info("export %s prêt : %s ligne(s), %s octet(s)", job.id, total, len(content))
    return ExportState.DONE


def _build(job: BuildJob, batch_size: int) -> tuple[bytes, int]:
    """Replay the list as its owner saw it and write its rows; returns the file and its row count.

    A fresh application context gives the build its own ``g`` and its own database session:
    without Redis the job runs inside the request that asked for it, whose session has just
    committed and whose logged-in user must not change.
    """
    app = current_app._get_current_object()
    view = list_view_for(job.kind)
    with (
        app.app_context(),
        app.test_request_context(view.url.rstrip("/") + "/", base_url=app.config["BASE_URL"], query_string=job.params),
    ):
        owner = db.session.get(User, job.user_id)
        if owner is None or not owner.is_active:
            raise ServiceError("Le compte qui a demandé cet export n'est plus actif.")
        # The owner becomes ``current_user`` for this request context only, as Flask-Login's
        # ``login_user`` does, but without its session cookie and its ``user_logged_in``
        # signal: the person did not log in again.
        app.login_manager._update_request_context_with_user(owner)
        if not policy.can_export(owner, view):
            raise ServiceError("Ce compte n'a plus accès à cette liste : l'export n'a pas été préparé.")
        ids = _ordered_ids(view)
        db.session.rollback()
        update_export(job.id, rows_total=len(ids), rows_done=0)
        columns = [(name, str(label)) for name, label in view.get_export_columns()]
        formatters = view.column_formatters_export or {}
        writer_class = WRITERS[job.format]
        type_formatters = writer_class.type_formatters(view.column_type_formatters_export or {})
        written = 0
        with tempfile.TemporaryFile() as file:
            writer = writer_class(file, [label for _name, label in columns], EXPORT_KIND_LABELS[job.kind])
            for start in range(0, len(ids), batch_size):
                for row in _load(view, ids[start : start + batch_size]):
                    writer.write(
                        [
                            # The export formatters of the view, as Flask-Admin's own CSV export
                            # uses them, with this format's type formatters (XLSX: real dates).
                            view._get_list_value(None, row, name, formatters, type_formatters)
                            for name, _label in columns
                        ]
                    )
                    written += 1
                # End the read transaction: nothing stays open between batches.
                db.session.rollback()
                update_export(job.id, rows_done=min(start + batch_size, len(ids)))
            return writer.finish(), written


def _ordered_ids(view: Any) -> list[int]:
    """The primary keys of the whole list, in its order (search, filters, sort, tab, scope)."""
    args = view._get_list_extra_args()
    sort = view._get_column_by_idx(args.sort)
    _count, query = view.get_list(
        0, sort[0] if sort else None, args.sort_desc, args.search, args.filters, execute=False, page_size=0
    )
    pk = view.model.__mapper__.primary_key[0]
    # A search across a relation may repeat a row; the list would too, the file does not.
    return list(dict.fromkeys(ident for (ident,) in query.with_entities(pk)))


def _load(view: Any, ids: list[Any]) -> list[Any]:
    """One batch of rows through the view's query (its scope and loader options), annotated like
    a page of the list, in the list's order."""
    pk = view.model.__mapper__.primary_key[0]
    rows = view.get_query().filter(pk.in_(ids)).all()
    position = {ident: index for index, ident in enumerate(ids)}
    rows.sort(key=lambda row: position[getattr(row, pk.key)])
    if rows:
        view.annotate(rows)
    return rows
