"""Exports of the request lists: a CSV or XLSX file of exactly the rows a person saw, built by
a job, downloadable by its owner for seven days, then purged.

This module keeps the export's record: asking for one (limits, the list's arguments worth
keeping), its states and progress, the owner's files, the purge. The file itself is built
through the list's own back-office view (``app/admin/export_builder.py``), and its cells follow
``services/spreadsheets.py``. Whether a person may export a list is the policy's answer, asked
by the interface that offers the export.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.dates import PARIS, as_utc
from app.extensions import db
from app.models import EXPORT_FORMATS, EXPORT_KINDS, Export, User
from app.models.base import utcnow
from app.models.desk import ExportState
from app.services import queueing
from app.services.errors import NotFound, ServiceError
from app.services.transactions import after_commit

log = logging.getLogger(__name__)

EXPORT_LIFETIME = timedelta(days=7)
# An export of a few hundred thousand rows takes minutes; RQ's default (180 s) would kill it.
EXPORT_JOB_TIMEOUT = 3600
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
    """Ask for the file of list ``kind`` as ``user`` sees it with ``params``; once the caller
    commits, it is handed to the job (inline without Redis: the file is ready when the commit
    returns). The caller has asked the policy whether ``user`` may export that list."""
    if kind not in EXPORT_KINDS:
        raise ServiceError("Cette liste ne peut pas être exportée.")
    if fmt not in EXPORT_FORMATS:
        raise ServiceError("Format d'export inconnu : choisissez CSV ou XLSX.")
    if user is None:
        raise ServiceError("Vous n'avez pas accès à cette liste.")
    cleaned = clean_params(params)
    now = utcnow()
    pending = db.session.scalar(
        select(func.count())
        .select_from(Export)
        .where(
            Export.user_id == user.id,
            Export.state.in_((ExportState.QUEUED, ExportState.RUNNING)),
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
        state=ExportState.QUEUED,
        rows_done=0,
        created_at=now,
        expires_at=now + EXPORT_LIFETIME,
    )
    db.session.add(export)
    db.session.flush()
    export_id = export.id
    after_commit(lambda: _hand_over(export_id))
    return export


def _hand_over(export_id: int) -> None:
    """Hand a committed export to its job (inline without Redis: built now); when Redis is
    unreachable, the record says why the file will not come."""
    try:
        queueing.enqueue(
            queueing.BUILD_EXPORT, export_id, job_id=f"export-{export_id}", job_timeout=EXPORT_JOB_TIMEOUT, result_ttl=0
        )
    except RedisError as error:
        log.warning("Redis injoignable (%s) : l'export %s n'a pas pu être lancé.", error, export_id)
        update_export(
            export_id,
            state=ExportState.FAILED,
            finished_at=utcnow(),
            error="La file des tâches est injoignable : l'export n'a pas pu démarrer. Réessayez dans quelques minutes.",
        )


# ---------------------------------------------------------------- building the file


@dataclass(frozen=True)
class BuildJob:
    id: int
    user_id: int
    kind: str
    format: str
    params: dict[str, str]
    created_at: datetime


def update_export(export_id: int, *conditions: Any, **values: Any) -> bool:
    """Write ``values`` on the export in a transaction of its own, so the page polling the
    progress sees it at once, whatever the builder's session holds."""
    with Session(db.engine) as session:
        result = session.execute(update(Export).where(Export.id == export_id, *conditions).values(**values))
        session.commit()
        return result.rowcount > 0


def claim_build(export_id: int) -> BuildJob | str:
    """Mark the export ``running`` and return what the build needs, or the state to stop at."""
    with Session(db.engine, expire_on_commit=False) as session:
        export = session.get(Export, export_id)
        if export is None:
            log.warning("export %s introuvable (purgé ?)", export_id)
            return "missing"
        if export.state in (ExportState.DONE, ExportState.FAILED):
            return export.state
        now = utcnow()
        if as_utc(export.expires_at) <= now:
            export.state, export.finished_at = ExportState.FAILED, now
            export.error = "Cet export a expiré avant d'avoir pu être préparé : demandez-le à nouveau."
            session.commit()
            return export.state
        export.state, export.rows_done, export.rows_total, export.error = ExportState.RUNNING, 0, None, None
        session.commit()
        return BuildJob(
            id=export.id,
            user_id=export.user_id,
            kind=export.kind,
            format=export.format,
            params=dict(export.params or {}),
            created_at=as_utc(export.created_at),
        )


def export_filename(kind: str, fmt: str, created_at: datetime) -> str:
    """``besoins-2026-11-27.xlsx``: the list and the day it was asked for, in Paris."""
    day = as_utc(created_at).astimezone(PARIS).date().isoformat()
    return f"{FILE_SLUGS[kind]}-{day}.{fmt}"


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
    return as_utc(export.expires_at) <= (now or utcnow())


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
    if export.state != ExportState.DONE or export.content is None:
        raise ServiceError("Ce fichier n'est pas encore prêt.")
    filename = export.filename or export_filename(export.kind, export.format, export.created_at)
    return Download(filename=filename, mimetype=MIMETYPES[export.format], content=export.content)


def purge_exports(now: datetime | None = None) -> int:
    """Delete the exports past their expiry, files included; returns how many (the cron job)."""
    now = now or utcnow()
    result = db.session.execute(
        Export.__table__.delete().where(Export.expires_at <= now)  # one statement, no rows loaded
    )
    if result.rowcount:
        log.info("%s export(s) expiré(s) supprimé(s)", result.rowcount)
    return result.rowcount
