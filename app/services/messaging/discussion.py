"""The need's discussion thread: experts and staff coordinate; the business never sees it.

Posting checks who may speak (an expert who received the need, or a staff member) and what
may be said (plain text of reasonable length); rendering keeps it plain text, escaped, with
its links made clickable.

Notifications are grouped: a comment is not emailed when it is posted but by a periodic job
(``notify_pending_comments``), once the need's newest unnotified comment is older than
``COMMENT_GROUPING_SECONDS``; so a burst of comments makes one email per recipient. Each email
is an outbox row keyed by the need, the recipient and the last comment of the burst, so a job
run twice, or two runs racing, never email the same burst twice. Without Redis nothing runs
the periodic job, so the burst is notified right after each comment commits.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import format_datetime
from markupsafe import Markup, escape
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from app.dates import as_utc
from app.extensions import db
from app.models import Antenne, Comment, Expert, Match, Need, User
from app.models.base import utcnow
from app.models.discussion import COMMENT_SOURCES
from app.models.requests import MATCH_STATUS_LABELS, MatchStatus
from app.services.errors import ServiceError
from app.services.messaging.links import expert_url, inbox_url
from app.services.messaging.outbox import queue_email
from app.services.messaging.reply_addresses import reply_address
from app.services.messaging.reply_parsing import without_controls
from app.services.transactions import after_commit, transaction

log = logging.getLogger(__name__)

MAX_BODY_LENGTH = 10_000
STAFF_LABEL = "Équipe Place des Entreprises"
DEFAULT_GROUPING_SECONDS = 60
# Experts who declined the need are out of the conversation.
QUIET_STATUSES = frozenset({MatchStatus.NOT_FOR_ME})

# Tabs and newlines are text; every other control character (NUL, escape sequences, bidi
# tricks are format characters, not controls, and stay) is refused rather than stored.
_ALLOWED_CONTROLS = {"\n", "\t"}


# ---------------------------------------------------------------- posting


def clean_body(body: str | None) -> str:
    """The body as stored: line endings unified, surrounding blanks removed, rules checked."""
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise ServiceError("Le message est vide : écrivez quelques mots avant d'envoyer.")
    if len(text) > MAX_BODY_LENGTH:
        raise ServiceError(
            f"Le message est trop long ({len(text)} caractères) : {MAX_BODY_LENGTH} caractères au maximum."
        )
    if any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in text):
        raise ServiceError("Le message contient des caractères de contrôle invisibles : retirez-les puis réessayez.")
    return text


def _check_author(need: Need, expert: Expert | None, user: User | None) -> None:
    if (expert is None) == (user is None):
        raise ServiceError("Un message a un seul auteur : un expert ou un membre de l'équipe.")
    if expert is not None:
        if expert.deleted_at is not None:
            raise ServiceError("Cet expert a été supprimé de l'annuaire : il ne peut plus écrire sur ce besoin.")
        received = db.session.scalar(
            select(func.count(Match.id)).where(Match.need_id == need.id, Match.expert_id == expert.id)
        )
        if not received:
            raise ServiceError("Seuls les experts qui ont reçu ce besoin peuvent écrire sur sa discussion.")
    elif not user.is_admin:
        raise ServiceError(
            "Seule l'équipe Place des Entreprises peut écrire sur la discussion depuis l'administration."
        )


def post_comment(
    need: Need,
    *,
    body: str,
    expert: Expert | None = None,
    user: User | None = None,
    source: str = "web",
    attachments: Iterable[str] = (),
) -> Comment:
    """Add a comment to the need's thread.

    Raises :class:`ServiceError` (French) when the body is empty, too long or holds control
    characters, or when the author may not write there. Without a worker (``RQ_ASYNC`` off),
    the other participants are emailed once the caller commits, since no periodic job will.
    """
    if source not in COMMENT_SOURCES:
        raise ServiceError(f"Origine de message inconnue : « {source} ».")
    text = clean_body(body)
    _check_author(need, expert, user)
    comment = Comment(
        need_id=need.id,
        expert_id=expert.id if expert is not None else None,
        user_id=user.id if user is not None else None,
        body=text,
        source=source,
        # Names come from email headers: without control characters (a NUL cannot be stored,
        # nor sent on in the notification, which would then fail at every run).
        attachments=[without_controls(str(name))[:200] for name in attachments],
    )
    db.session.add(comment)
    db.session.flush()
    if _notify_inline():
        after_commit(_notify_now)
    return comment


def _notify_now() -> None:
    """After the comment's commit, in an application context of its own (the committing
    session cannot emit SQL any more in its after-commit hook)."""
    with current_app._get_current_object().app_context():
        notify_pending_comments(grouping_seconds=0)


def _notify_inline() -> bool:
    """Whether to notify right after posting: by default when nothing runs the periodic job."""
    config = current_app.config
    return bool(config.get("COMMENT_NOTIFY_INLINE", not config.get("RQ_ASYNC")))


# ---------------------------------------------------------------- reading


def _with_authors(query):
    return query.options(
        selectinload(Comment.expert).selectinload(Expert.antenne).selectinload(Antenne.institution),
        selectinload(Comment.user),
    )


def thread(need: Need) -> list[Comment]:
    """The need's comments, oldest first (newest last, as a conversation reads), authors loaded."""
    query = select(Comment).where(Comment.need_id == need.id).order_by(Comment.created_at, Comment.id)
    return list(db.session.scalars(_with_authors(query)))


def author_label(comment: Comment) -> str:
    """« Prénom Nom — Antenne (Institution) » for an expert; the team's name for staff, whose
    own names are not the experts' business."""
    if comment.expert is None:
        return STAFF_LABEL
    expert = comment.expert
    antenne = expert.antenne
    return f"{expert.full_name} — {antenne.name} ({antenne.institution.name})"


def comment_date(comment: Comment) -> str:
    """« 3 mars 2025 à 14h05 », Paris time."""
    return format_datetime(comment.created_at, "d MMMM y 'à' HH'h'mm")


# An http(s) address up to the next blank or character that cannot end a pasted link.
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the address.
_TRAILING = ".,;:!?»)]}'\""


def _split_url(candidate: str) -> tuple[str, str]:
    """Separate trailing punctuation from an address; a closing parenthesis stays when the
    address opened one (Wikipedia-style links)."""
    end = len(candidate)
    while end and candidate[end - 1] in _TRAILING:
        if candidate[end - 1] == ")" and candidate[:end].count("(") >= candidate[:end].count(")"):
            break
        end -= 1
    return candidate[:end], candidate[end:]


def linkify(text: str | None) -> Markup:
    """Plain text as safe HTML: escaped, line breaks kept, http(s) addresses made links.

    Each piece is escaped on its own, so the text never becomes markup; only addresses that
    start with ``http://`` or ``https://`` become links (no ``javascript:``), opened without
    handing over the page (``noopener noreferrer``) nor lending it our reputation (``nofollow``).
    """
    text = (text or "").replace("\r\n", "\n")
    parts: list[Markup] = []
    position = 0
    for found in _URL.finditer(text):
        url, rest = _split_url(found.group(0))
        if len(url) <= len(found.group(0).split("://", 1)[0]) + 3:  # nothing after the scheme
            continue
        parts.append(escape(text[position : found.start()]))
        parts.append(Markup('<a href="{0}" rel="noopener noreferrer nofollow">{0}</a>').format(url))
        parts.append(escape(rest))
        position = found.end()
    parts.append(escape(text[position:]))
    html = Markup("").join(parts)
    return html.replace("\n", Markup("<br>\n"))


# ---------------------------------------------------------------- notifications


@dataclass
class _Recipient:
    kind: str  # "expert" or "user"
    ident: int
    email: str
    match: Match | None = None

    def wrote(self, comment: Comment) -> bool:
        if self.kind == "expert":
            return comment.expert_id == self.ident
        return comment.user_id == self.ident


def _grouping_window(grouping_seconds: float | None) -> timedelta:
    if grouping_seconds is None:
        grouping_seconds = current_app.config.get("COMMENT_GROUPING_SECONDS", DEFAULT_GROUPING_SECONDS)
    return timedelta(seconds=float(grouping_seconds))


def needs_to_notify(*, now: datetime | None = None, grouping_seconds: float | None = None) -> list[int]:
    """Needs whose burst of unnotified comments is over: the newest is older than the window."""
    now = now or utcnow()
    limit = now - _grouping_window(grouping_seconds)
    query = (
        select(Comment.need_id)
        .where(Comment.notified_at.is_(None))
        .group_by(Comment.need_id)
        .having(func.max(Comment.created_at) <= limit)
        .order_by(Comment.need_id)
    )
    return list(db.session.scalars(query))


def _recipients(need: Need) -> list[_Recipient]:
    """The experts still involved (not those who declined, nor deleted ones), then the staff who
    follow the need: those who wrote on its thread."""
    matches = db.session.scalars(
        select(Match)
        .where(Match.need_id == need.id, Match.status.not_in(QUIET_STATUSES))
        .options(selectinload(Match.expert))
        .order_by(Match.id)
    )
    recipients = [
        _Recipient("expert", match.expert_id, match.expert.email, match)
        for match in matches
        if match.expert.deleted_at is None and match.expert.email
    ]
    followers = db.session.scalars(
        select(User)
        .where(User.id.in_(select(Comment.user_id).where(Comment.need_id == need.id, Comment.user_id.is_not(None))))
        .order_by(User.id)
    )
    recipients += [_Recipient("user", user.id, user.email) for user in followers if user.is_admin and user.email]
    return recipients


def _context(need: Need, recipient: _Recipient, comments: list[Comment]) -> dict:
    base_url = current_app.config["BASE_URL"]
    context = {
        "subject": need.subject.label,
        "company_name": need.facility.company.name,
        "commune": need.facility.commune.name,
        "comments": [
            {"author": author_label(c), "date": comment_date(c), "body": c.body, "attachments": c.attachments or []}
            for c in comments
        ],
        "for_expert": recipient.kind == "expert",
    }
    if recipient.match is not None:
        context["expert_url"] = expert_url(recipient.match)
        context["inbox_url"] = inbox_url(recipient.match.expert)
        context["reply_by_email"] = bool(current_app.config.get("INBOUND_EMAIL_DOMAIN"))
        context["status_label"] = MATCH_STATUS_LABELS.get(recipient.match.status, recipient.match.status)
    else:
        context["admin_url"] = f"{base_url}/admin/need/details/?id={need.id}"
    return context


def _notify_need(need_id: int, now: datetime, limit: datetime) -> int:
    """Email the burst of ``need_id`` to each participant who did not write all of it, unless
    it grew since it was found (a comment newer than ``limit``): the next run will take it."""
    need = db.session.scalars(
        select(Need).where(Need.id == need_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    query = (
        select(Comment)
        .where(Comment.need_id == need.id, Comment.notified_at.is_(None))
        .order_by(Comment.created_at, Comment.id)
    )
    pending = list(db.session.scalars(_with_authors(query)))
    if not pending or as_utc(max(comment.created_at for comment in pending)) > limit:
        return 0  # another run took it meanwhile, or the burst goes on
    last_id = max(comment.id for comment in pending)
    sent = 0
    for recipient in _recipients(need):
        theirs = [comment for comment in pending if not recipient.wrote(comment)]
        if not theirs:
            continue
        queue_email(
            f"comments:{need.id}:{recipient.kind}:{recipient.ident}:{last_id}",
            to=recipient.email,
            template="comments_digest",
            context=_context(need, recipient, theirs),
            # An expert may answer the thread by replying to the email (services.inbound).
            reply_to=reply_address(recipient.match) if recipient.match is not None else None,
        )
        sent += 1
    # A bulk update: bookkeeping, not a change anyone needs in the audit trail.
    db.session.execute(
        update(Comment)
        .where(Comment.id.in_([comment.id for comment in pending]))
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return sent


def notify_pending_comments(*, now: datetime | None = None, grouping_seconds: float | None = None) -> int:
    """Email every finished burst of comments to the need's other participants; return the
    number of emails queued. Safe to run twice or concurrently (row lock, one key per burst).

    A batch: each need is its own unit of work, committed on its own, so one need that cannot
    be notified holds none of the others back (it is tried again at the next run).
    """
    now = now or utcnow()
    limit = now - _grouping_window(grouping_seconds)
    total = 0
    for need_id in needs_to_notify(now=now, grouping_seconds=grouping_seconds):
        try:
            with transaction():
                total += _notify_need(need_id, now, limit)
        except Exception:
            log.exception(
                "discussion du besoin %s : notification impossible, nouvel essai au prochain passage", need_id
            )
    return total
