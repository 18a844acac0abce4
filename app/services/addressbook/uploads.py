"""Address book uploads waiting between the preview and the confirmation.

The uploader (staff or a partner referent) confirms the very bytes that were previewed: they are kept in the database
under a random token bound to the uploader, and consumed by the import they lead to.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from app.extensions import db
from app.models import AddressbookUpload
from app.models.base import utcnow
from app.services.addressbook.importer import import_addressbook

TOKEN = re.compile(r"^[0-9a-f]{32}$")
# A preview older than this is no longer confirmable (the address book may have moved on).
UPLOAD_TTL = timedelta(hours=24)


def stage_upload(raw: bytes, *, filename: str, user_id: int) -> str:
    """Keep ``raw`` for its uploader and return the token the confirmation form carries."""
    db.session.execute(delete(AddressbookUpload).where(AddressbookUpload.created_at < utcnow() - UPLOAD_TTL))
    token = secrets.token_hex(16)
    db.session.add(AddressbookUpload(token=token, user_id=user_id, filename=filename[:255], content=raw))
    db.session.flush()
    return token


def take_upload(token: str | None, *, user_id: int) -> AddressbookUpload | None:
    """The upload of ``token`` if it is this user's and still fresh; removed from the store
    (the caller's commit makes that final), so one preview leads to at most one import."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        return None
    upload = db.session.scalar(
        select(AddressbookUpload).where(
            AddressbookUpload.token == token,
            AddressbookUpload.user_id == user_id,
            AddressbookUpload.created_at >= utcnow() - UPLOAD_TTL,
        )
    )
    if upload is not None:
        db.session.delete(upload)
    return upload


def import_upload(token: str | None, *, user_id: int, scope=None):
    """Import the previewed upload of ``token`` (one preview, at most one import).

    Returns None when the preview is no longer valid, else the import's report. The upload is
    consumed either way: if the address book moved on since the preview and the file now has
    errors, nothing is imported and the uploader sends it again. ``scope`` is checked again
    here (``policy.referent_scope``): a referent's scope may have changed since the preview.
    """
    upload = take_upload(token, user_id=user_id)
    if upload is None:
        return None
    # The caller's commit consumes the upload, with the import or (the file now has errors) alone.
    return import_addressbook(upload.content, scope=scope)
