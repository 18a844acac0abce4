"""Exports of the request lists (issue 5): a CSV or XLSX file of exactly the rows a staff member
saw, built by a job, downloadable by its owner for seven days, then purged.

Why the file is built through the list's own back-office view: the list *is* its view's
configuration (search, filters, the desk's tab, sorting, the policy's scope, the French labels,
choice labels and formatters). Rebuilding it from the view, inside a request context made of the
saved URL arguments with the owner logged in, keeps the file identical to the list even when the
view changes; a second description of the same list here would drift. The view is found in the
registry of the back office by its ``export_kind``, so this module imports nothing from
``app/admin``.

Large lists: the ids are read first, in the list's order (one narrow query), then the rows are
loaded by batches of ids through the view's query (its loader options and the policy's scope
apply again), annotated like a page of the list, and written to a temporary file. No OFFSET, no
cursor left open between batches (so the progress, committed on its own connection after each
batch, is visible to the page even on SQLite), and the memory held is one batch plus the ids.

Files:

- CSV: UTF-8 with a BOM, ``;``-separated, CRLF line ends. That is what Excel in a French locale
  opens correctly with a double click: it splits on the system's list separator, which is ``;``
  in France (``,`` is the decimal mark), and it reads UTF-8 only when the BOM says so (without
  it accents come out as « Ã© »). LibreOffice detects both. Cells that a spreadsheet would run
  as a formula (``=…``, ``+…``, ``-…``, ``@…``; anyone can type them on the public form) are
  prefixed with an apostrophe, except plain numbers and phone numbers.
- XLSX: openpyxl's write-only mode (rows streamed to disk, constant memory); dates are real
  date cells in Paris time, numbers are numbers, text is always text (never a formula).

Safe to run twice: a ``done`` or ``failed`` export is left alone; a ``running`` one (its worker
died) is built again from the start.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from markupsafe import Markup
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import policy
from app.extensions import db
from app.models import EXPORT_FORMATS, EXPORT_KIND_LABELS, EXPORT_KINDS, Export, User
from app.models.base import utcnow
from app.services.errors import NotFound, ServiceError

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
EXPORT_LIFETIME = timedelta(days=7)
# Rows loaded, written and counted in the progress at a time.
BATCH_SIZE = 1000
# A person may have this many exports waiting or being built at once (recent ones: an export
# whose worker died stops counting after PENDING_WINDOW).
MAX_PENDING_EXPORTS = 3
PENDING_WINDOW = timedelta(hours=1)
# The list's URL arguments that do not change which rows it holds.
IGNORED_PARAMS = frozenset({"page", "page_size"})
MAX_PARAMS = 40
MAX_PARAM_LENGTH = 1000
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

FILE_SLUGS = {"solicitations": "sollicitations", "needs": "besoins", "matches": "mises-en-relation"}
FORMAT_LABELS = {"csv": "CSV", "xlsx": "XLSX"}
MIMETYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

UNEXPECTED_ERROR = (
    "L'export a échoué à cause d'une erreur inattendue ({detail}). Demandez-le à nouveau ; "
    "si l'erreur se répète, signalez-la à l'équipe technique."
)


# ---------------------------------------------------------------- the lists


def list_view_for(kind: str) -> Any:
    """The back-office list view registered for ``kind`` (its ``export_kind``)."""
    admin = current_app.extensions.get("pde_admin")
    for view in getattr(admin, "_views", ()):
        if getattr(view, "export_kind", None) == kind:
            return view
    raise ServiceError("Cette liste ne peut pas être exportée.")


def clean_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The list's URL arguments worth keeping: everything that selects or orders rows.

    Paging is dropped (the file holds every page). Unknown arguments are kept, since a view may
    read its own (the desk's ``onglet``); names that no URL of the back office carries are not.
    """
    cleaned: dict[str, str] = {}
    for name, value in params.items():
        if name in IGNORED_PARAMS or not isinstance(name, str) or not _PARAM_NAME.match(name):
            continue
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        # NUL reaches no database column and no list: dropped rather than refused.
        text = "" if value is None else str(value).replace("\x00", "")
        if len(text) > MAX_PARAM_LENGTH:
            raise ServiceError(
                f"Un critère de la liste dépasse {MAX_PARAM_LENGTH} caractères : raccourcissez la recherche."
            )
        cleaned[name] = text
    if len(cleaned) > MAX_PARAMS:
        raise ServiceError(f"La liste a plus de {MAX_PARAMS} critères : retirez des filtres avant d'exporter.")
    return cleaned


# ---------------------------------------------------------------- asking for a file


def request_export(user: User, kind: str, fmt: str, params: Mapping[str, Any]) -> Export:
    """Ask for the file of list ``kind`` as ``user`` sees it with ``params``; commits, then
    hands it to the job (inline without Redis: the file is ready when this returns)."""
    if kind not in EXPORT_KINDS:
        raise ServiceError("Cette liste ne peut pas être exportée.")
    if fmt not in EXPORT_FORMATS:
        raise ServiceError("Format d'export inconnu : choisissez CSV ou XLSX.")
    view = list_view_for(kind)
    if user is None or not policy.can_export(user, view):
        raise ServiceError("Vous n'avez pas accès à cette liste.")
    cleaned = clean_params(params)
    now = utcnow()
    pending = db.session.scalar(
        select(func.count())
        .select_from(Export)
        .where(
            Export.user_id == user.id,
            Export.state.in_(("queued", "running")),
            Export.created_at > now - PENDING_WINDOW,
        )
    )
    if pending >= MAX_PENDING_EXPORTS:
        raise ServiceError(
            f"Vous avez déjà {pending} exports en préparation : attendez qu'ils soient prêts avant d'en demander un autre."
        )
    export = Export(
        user_id=user.id,
        kind=kind,
        format=fmt,
        params=cleaned,
        state="queued",
        rows_done=0,
        created_at=now,
        expires_at=now + EXPORT_LIFETIME,
    )
    try:
        db.session.add(export)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    export_id = export.id

    from app.jobs import enqueue_export_build

    if not enqueue_export_build(export_id):
        _update(
            export_id,
            state="failed",
            finished_at=utcnow(),
            error="La file des tâches est injoignable : l'export n'a pas pu démarrer. Réessayez dans quelques minutes.",
        )
    db.session.expire(export)
    return export


# ---------------------------------------------------------------- building the file


@dataclass(frozen=True)
class _Job:
    id: int
    user_id: int
    kind: str
    format: str
    params: dict[str, str]
    created_at: datetime


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _update(export_id: int, *conditions: Any, **values: Any) -> bool:
    """Write ``values`` on the export in a transaction of its own, so the page polling the
    progress sees it at once, whatever the builder's session holds."""
    with Session(db.engine) as session:
        result = session.execute(update(Export).where(Export.id == export_id, *conditions).values(**values))
        session.commit()
        return result.rowcount > 0


def _claim(export_id: int) -> _Job | str:
    """Mark the export ``running`` and return what the build needs, or the state to stop at."""
    with Session(db.engine, expire_on_commit=False) as session:
        export = session.get(Export, export_id)
        if export is None:
            log.warning("export %s introuvable (purgé ?)", export_id)
            return "missing"
        if export.state in ("done", "failed"):
            return export.state
        now = utcnow()
        if _aware(export.expires_at) <= now:
            export.state, export.finished_at = "failed", now
            export.error = "Cet export a expiré avant d'avoir pu être préparé : demandez-le à nouveau."
            session.commit()
            return export.state
        export.state, export.rows_done, export.rows_total, export.error = "running", 0, None, None
        session.commit()
        return _Job(
            id=export.id,
            user_id=export.user_id,
            kind=export.kind,
            format=export.format,
            params=dict(export.params or {}),
            created_at=_aware(export.created_at),
        )


def export_filename(kind: str, fmt: str, created_at: datetime) -> str:
    """``besoins-2026-11-27.xlsx``: the list and the day it was asked for, in Paris."""
    day = _aware(created_at).astimezone(PARIS).date().isoformat()
    return f"{FILE_SLUGS[kind]}-{day}.{fmt}"


def build_export(export_id: int, *, batch_size: int = BATCH_SIZE) -> str:
    """Build the file of export ``export_id`` and return its final state (the job's body)."""
    job = _claim(export_id)
    if isinstance(job, str):
        return job
    try:
        content, total = _build(job, batch_size)
    except ServiceError as error:
        _update(job.id, Export.state == "running", state="failed", error=str(error), finished_at=utcnow())
        return "failed"
    except Exception as error:
        log.exception("export %s : échec inattendu", job.id)
        detail = f"{type(error).__name__}"
        _update(
            job.id,
            Export.state == "running",
            state="failed",
            error=UNEXPECTED_ERROR.format(detail=detail),
            finished_at=utcnow(),
        )
        return "failed"
    _update(
        job.id,
        Export.state == "running",
        state="done",
        content=content,
        filename=export_filename(job.kind, job.format, job.created_at),
        rows_done=total,
        rows_total=total,
        error=None,
        finished_at=utcnow(),
    )
    log.info("export %s prêt : %s ligne(s), %s octet(s)", job.id, total, len(content))
    return "done"


def _build(job: _Job, batch_size: int) -> tuple[bytes, int]:
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
        _update(job.id, rows_total=len(ids), rows_done=0)
        columns = [(name, str(label)) for name, label in view.get_export_columns()]
        formatters = view.column_formatters_export or {}
        writer_class = _XlsxWriter if job.format == "xlsx" else _CsvWriter
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
                _update(job.id, rows_done=min(start + batch_size, len(ids)))
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


# ---------------------------------------------------------------- writers

# A cell starting with one of these is a formula to a spreadsheet...
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ...unless it is a plain number or a phone number.
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s.,()/]*\d[\d\s.,()/]*$")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value.striptags()
    return str(value)


def _paris_naive(_view: Any, value: datetime, *_args: Any) -> datetime:
    return _aware(value).astimezone(PARIS).replace(tzinfo=None)


class _CsvWriter:
    def __init__(self, file: Any, headers: list[str], _title: str) -> None:
        self.file = file
        self.text = io.TextIOWrapper(self.file, encoding="utf-8-sig", newline="")
        self.csv = csv.writer(self.text, delimiter=";")
        self.csv.writerow(headers)

    @staticmethod
    def type_formatters(view_formatters: dict) -> dict:
        return view_formatters

    @staticmethod
    def cell(value: Any) -> str:
        text = _text(value).replace("\x00", "")
        if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
            return "'" + text
        return text

    def write(self, values: list[Any]) -> None:
        self.csv.writerow([self.cell(value) for value in values])

    def finish(self) -> bytes:
        self.text.flush()
        self.text.detach()
        self.file.seek(0)
        return self.file.read()


class _XlsxWriter:
    DATETIME_FORMAT = "DD/MM/YYYY HH:MM"
    DATE_FORMAT = "DD/MM/YYYY"

    def __init__(self, file: Any, headers: list[str], title: str) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self._cell_class = WriteOnlyCell
        # Control characters a worksheet cannot hold (openpyxl would refuse the whole file).
        self._illegal = ILLEGAL_CHARACTERS_RE
        self._error_codes = frozenset(ERROR_CODES)
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet(title=title[:31])
        self.sheet.freeze_panes = "A2"
        for index, header in enumerate(headers, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = min(max(len(header) + 4, 14), 40)
        bold = Font(bold=True)
        header_cells = []
        for header in headers:
            cell = WriteOnlyCell(self.sheet, value=ILLEGAL_CHARACTERS_RE.sub("", header))
            cell.font = bold
            header_cells.append(cell)
        self.sheet.append(header_cells)
        self.file = file

    @staticmethod
    def type_formatters(view_formatters: dict) -> dict:
        # Dates stay dates (in Paris time) for the spreadsheet to sort and compute with.
        return {**view_formatters, datetime: _paris_naive}

    def cell(self, value: Any) -> Any:
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        if isinstance(value, datetime):
            cell = self._cell_class(self.sheet, value=value)
            cell.number_format = self.DATETIME_FORMAT
            return cell
        if isinstance(value, date):
            cell = self._cell_class(self.sheet, value=value)
            cell.number_format = self.DATE_FORMAT
            return cell
        text = self._illegal.sub("", _text(value))
        if not (text.startswith("=") or text in self._error_codes):
            return text
        cell = self._cell_class(self.sheet, value=text)
        # Text typed as « =… » or « #N/A » stays text: never a formula or an error value.
        cell.data_type = "s"
        return cell

    def write(self, values: list[Any]) -> None:
        self.sheet.append([self.cell(value) for value in values])

    def finish(self) -> bytes:
        self.book.save(self.file)
        self.file.seek(0)
        return self.file.read()


# ---------------------------------------------------------------- the owner's files


def exports_of(user: User, *, limit: int = 100) -> list[Export]:
    """The person's exports, newest first (their files are not loaded)."""
    return list(
        db.session.scalars(
            select(Export)
            .where(Export.user_id == user.id)
            .order_by(Export.created_at.desc(), Export.id.desc())
            .limit(limit)
        )
    )


def export_of(export_id: Any, user: User) -> Export:
    """One export of ``user``; another person's is as absent as a purged one."""
    try:
        ident = int(export_id)
    except (TypeError, ValueError):
        raise NotFound("Cet export n'existe pas ou plus.") from None
    export = db.session.get(Export, ident)
    if export is None or user is None or export.user_id != getattr(user, "id", None):
        raise NotFound("Cet export n'existe pas ou plus.")
    return export


def is_expired(export: Export, now: datetime | None = None) -> bool:
    return _aware(export.expires_at) <= (now or utcnow())


@dataclass(frozen=True)
class Download:
    filename: str
    mimetype: str
    content: bytes


def export_for_download(export_id: Any, user: User) -> Download:
    """The file of a ready export, for its owner only, until it expires."""
    export = export_of(export_id, user)
    if is_expired(export):
        raise ServiceError("Ce fichier a expiré : demandez un nouvel export.")
    if export.state != "done" or export.content is None:
        raise ServiceError("Ce fichier n'est pas encore prêt.")
    filename = export.filename or export_filename(export.kind, export.format, export.created_at)
    return Download(filename=filename, mimetype=MIMETYPES[export.format], content=export.content)


def purge_exports(now: datetime | None = None) -> int:
    """Delete the exports past their expiry, files included; returns how many (the cron job)."""
    now = now or utcnow()
    result = db.session.execute(
        Export.__table__.delete().where(Export.expires_at <= now)  # one statement, no rows loaded
    )
    db.session.commit()
    if result.rowcount:
        log.info("%s export(s) expiré(s) supprimé(s)", result.rowcount)
    return result.rowcount
