"""The relances desk: what the automatic follow-up has not moved, put in front of people.

The follow-up (``followup``) sends the emails that need nobody; this desk is for the calls and
the judgement. Needs are in baskets by how long nobody has answered them (« Sans réponse » from
the reminder day to the last-chance day, « Risque d'abandon » from then to the failure day), or
because every expert refused them (« Refusés »); experts are in baskets by what they let wait
(more than 5 requests; 2 to 5 with at least 2 old ones; one request after months without any).

Staff share one desk; the referents of an institution (or of one antenne) have their own, over
their own experts: their « Traité » and notes do not hide anything from staff. « Traité » clears a
need from one basket (it comes back in the next one) and an expert for a week (if still in the
basket then, they are due again). Every query goes through the policy's scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import aliased, selectinload

from app import policy
from app.dates import in_paris
from app.extensions import db
from app.models import (
    STAFF_DESK,
    Antenne,
    Expert,
    Facility,
    Match,
    Need,
    OutboundEmail,
    ReminderMark,
    ReminderNote,
    SatisfactionAnswer,
    User,
)
from app.models.base import days_before, utcnow
from app.models.requests import NeedStatus
from app.services.addressbook.absences import absence_text, is_absent
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email
from app.services.requests.followup import (
    LAST_CHANCE,
    RECAP,
    RECAP_LISTED,
    REMINDER,
    Delays,
    listed_match_options,
    still_waiting,
    waiting_list_context,
)
from app.services.requests.notes import clean_note
from app.services.requests.satisfaction import closed_with_help_by

NEED_BASKETS = {
    "sans-reponse": "Sans réponse",
    "risque-abandon": "Risque d'abandon",
    "refuses": "Refusés",
}
EXPERT_BASKETS = {
    "plus-de-5": "Plus de 5 demandes en attente",
    "2-a-5": "2 à 5 demandes en attente",
    "apres-silence": "Une demande après des mois de silence",
}
# An expert's waiting request is « old » from this many days; « silence » is this long without
# receiving any request; the one request of that basket has waited at least ``RECENT_DAYS``.
OLD_DAYS = 15
SILENCE_DAYS = 90
RECENT_DAYS = 3
# « Traité » clears an expert for a week: the weekly recap's rhythm.
EXPERT_MARK_DAYS = 7
PAGE_SIZE = 25
MAX_NOTE_LENGTH = 2_000
# How far back an expert's last reminder is looked for (weekly keys).
REMINDER_WEEKS = 8
MANUAL = "relance"


# ---------------------------------------------------------------- whose desk


def desk_of(user: User) -> str:
    """The desk ``user`` works at: staff's, or their institution's (or antenne's) referents'."""
    scope = policy.referent_scope(user)
    if scope is None:
        return STAFF_DESK
    if isinstance(scope, Antenne):
        return f"antenne:{scope.id}"
    return f"institution:{scope.id}"


def _visible_notes(user: User, column, ids: list[int]) -> dict[int, list[ReminderNote]]:
    """The notes on these needs (or experts), newest first: staff read every desk's, a
    referent their own desk's."""
    if not ids:
        return {}
    query = (
        select(ReminderNote)
        .where(column.in_(ids))
        .options(selectinload(ReminderNote.user))
        .order_by(ReminderNote.created_at.desc(), ReminderNote.id.desc())
    )
    if not policy.is_staff(user):
        query = query.where(ReminderNote.desk == desk_of(user))
    notes: dict[int, list[ReminderNote]] = {}
    for note in db.session.scalars(query):
        notes.setdefault(getattr(note, column.key), []).append(note)
    return notes


@dataclass(frozen=True)
class LastReminder:
    what: str
    at: datetime


def _last_reminders(wanted: dict[str, tuple[int, str]]) -> dict[int, LastReminder]:
    """The latest email among ``wanted`` (outbox key → (item id, what it was)), per item."""
    if not wanted:
        return {}
    latest: dict[int, LastReminder] = {}
    for key, created_at in db.session.execute(
        select(OutboundEmail.key, OutboundEmail.created_at).where(OutboundEmail.key.in_(list(wanted)))
    ):
        item, what = wanted[key]
        if item not in latest or created_at > latest[item].at:
            latest[item] = LastReminder(what, created_at)
    return latest


@dataclass(frozen=True)
class Page:
    items: list
    total: int
    page: int
    pages: int


def _paged(query, page: int, count_query) -> tuple[list, int, int, int]:
    total = db.session.scalar(count_query) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages)
    rows = db.session.execute(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return rows, total, page, pages


# ---------------------------------------------------------------- needs


def _need_window(basket: str, delays: Delays) -> tuple[str, timedelta, timedelta]:
    """A needs basket's status, and how long ago its needs first reached an expert (from, to).
    A refused need stays in « Refusés » until its failure could no longer be announced (the
    failure day and its catch-up), as the automatic failure does for the others."""
    if basket == "sans-reponse":
        return NeedStatus.QUO, delays.last_chance, delays.reminder
    if basket == "risque-abandon":
        return NeedStatus.QUO, delays.failure, delays.last_chance
    if basket == "refuses":
        return NeedStatus.NOT_FOR_ME, delays.failure + delays.catch_up, timedelta(0)
    raise ServiceError("Panier inconnu.")


def _need_in(basket: str, first, now: datetime, delays: Delays, desk: str) -> list:
    """The conditions that put a need in ``basket``, over the first-sent dates of ``first``."""
    status, start, end = _need_window(basket, delays)
    marked = exists().where(ReminderMark.need_id == Need.id, ReminderMark.basket == basket, ReminderMark.desk == desk)
    return [
        Need.status == status,
        first.c.first_sent > now - start,
        first.c.first_sent <= now - end,
        ~marked,
    ]


def _needs_select(user: User, now: datetime, delays: Delays, columns: Callable, *conditions: Callable):
    """``SELECT columns(first)`` over the needs that may be in a basket (and ``first``), where
    ``first.c.first_sent`` is when each need first reached an expert.

    Driven by the matches sent within the widest basket (the index on their date): a million
    matches are never grouped, only those of the last weeks. The first of a need's recent
    matches is its first only if none came before, hence the anti-join."""
    widest = max(_need_window(basket, delays)[1] for basket in NEED_BASKETS)
    first = (
        select(Match.need_id.label("need_id"), func.min(Match.created_at).label("first_sent"))
        .where(Match.created_at > now - widest)
        .group_by(Match.need_id)
        .subquery()
    )
    earlier = aliased(Match)
    query = (
        select(*columns(first))
        .select_from(Need)
        .join(first, first.c.need_id == Need.id)
        .where(
            Need.abandoned_at.is_(None),
            ~exists().where(earlier.need_id == Need.id, earlier.created_at <= now - widest),
            *(condition(first) for condition in conditions),
        )
    )
    return policy.scope_query(user, Need, query), first


def need_counts(user: User, now: datetime | None = None) -> dict[str, int]:
    """How many needs each basket holds, in one query."""
    now = now or utcnow()
    delays = Delays.from_config()
    desk = desk_of(user)
    query, _first = _needs_select(
        user,
        now,
        delays,
        lambda first: [
            func.count(Need.id).filter(and_(*_need_in(basket, first, now, delays, desk))) for basket in NEED_BASKETS
        ],
    )
    row = db.session.execute(query).one()
    return {basket: count or 0 for basket, count in zip(NEED_BASKETS, row, strict=True)}


@dataclass
class NeedItem:
    need: Need
    first_sent: datetime
    days: int
    matches: list[Match] = field(default_factory=list)
    absences: dict[int, str] = field(default_factory=dict)  # expert id → « Absent jusqu'au … »
    last_reminder: LastReminder | None = None
    notes: list[ReminderNote] = field(default_factory=list)


def need_basket(user: User, basket: str, *, page: int = 1, now: datetime | None = None) -> Page:
    """One page of a needs basket, oldest first, with what the desk needs to act on each."""
    if basket not in NEED_BASKETS:
        raise ServiceError("Panier inconnu.")
    now = now or utcnow()
    delays = Delays.from_config()
    desk = desk_of(user)

    def select_basket(columns: Callable):
        return _needs_select(
            user, now, delays, columns, lambda first: and_(*_need_in(basket, first, now, delays, desk))
        )

    query, first = select_basket(lambda first: (Need, first.c.first_sent))
    query = query.order_by(first.c.first_sent, Need.id).options(
        selectinload(Need.subject),
        selectinload(Need.contact),
        selectinload(Need.facility).selectinload(Facility.company),
        selectinload(Need.facility).selectinload(Facility.commune),
    )
    rows, total, page, pages = _paged(query, page, select_basket(lambda _first: (func.count(Need.id),))[0])
    items = [NeedItem(need, sent_at, (now - sent_at).days) for need, sent_at in rows]
    by_id = {item.need.id: item for item in items}
    if by_id:
        matches = db.session.scalars(
            policy.scope_query(
                user,
                Match,
                select(Match)
                .where(Match.need_id.in_(list(by_id)))
                .options(selectinload(Match.expert).selectinload(Expert.antenne).selectinload(Antenne.institution))
                .order_by(Match.id),
            )
        )
        today = in_paris(now).date()
        for match in matches:
            item = by_id[match.need_id]
            item.matches.append(match)
            absence = absence_text(match.expert, today)
            if absence:
                item.absences[match.expert_id] = absence
        wanted = {
            f"solicitation:{i.need.solicitation_id}:{REMINDER}": (i.need.id, "« Suivi » à l'entreprise")
            for i in items
            if i.need.solicitation_id
        }
        for item in items:
            for match in item.matches:
                wanted[f"match:{match.id}:{LAST_CHANCE}"] = (
                    item.need.id,
                    f"« Dernière chance » à {match.expert.full_name}",
                )
        for need_id, reminder in _last_reminders(wanted).items():
            by_id[need_id].last_reminder = reminder
        for need_id, notes in _visible_notes(user, ReminderNote.need_id, list(by_id)).items():
            by_id[need_id].notes = notes
    return Page(items, total, page, pages)


# ---------------------------------------------------------------- experts


def _waiting_stats(now: datetime, delays: Delays):
    """Per expert: their waiting (not expired) requests, how many are old, the newest, the oldest."""
    old = now - timedelta(days=OLD_DAYS)
    return (
        select(
            Match.expert_id.label("expert_id"),
            func.count().label("waiting"),
            func.sum(case((Match.created_at <= old, 1), else_=0)).label("old"),
            func.max(Match.created_at).label("newest"),
            func.min(Match.created_at).label("oldest"),
        )
        .join(Need, Match.need_id == Need.id)
        .where(*still_waiting(now, delays))
        .group_by(Match.expert_id)
        .subquery()
    )


def _expert_basket(basket: str, stats, now: datetime) -> list:
    if basket == "plus-de-5":
        return [stats.c.waiting > 5]
    if basket == "2-a-5":
        return [stats.c.waiting.between(2, 5), stats.c.old >= 2]
    if basket == "apres-silence":
        earlier = aliased(Match)
        silence = ~exists().where(
            earlier.expert_id == stats.c.expert_id,
            earlier.created_at < stats.c.newest,
            earlier.created_at >= days_before(stats.c.newest, SILENCE_DAYS),
        )
        return [stats.c.waiting == 1, stats.c.newest <= now - timedelta(days=RECENT_DAYS), silence]
    raise ServiceError("Panier inconnu.")


def _expert_in(basket: str, stats, now: datetime, desk: str) -> list:
    """The conditions that put an expert in ``basket`` (a « Traité » lasts a week)."""
    marked = exists().where(
        ReminderMark.expert_id == Expert.id,
        ReminderMark.basket == basket,
        ReminderMark.desk == desk,
        ReminderMark.created_at > now - timedelta(days=EXPERT_MARK_DAYS),
    )
    return [*_expert_basket(basket, stats, now), ~marked]


def _experts_select(user: User, stats, *columns, where: Iterable = ()):
    query = (
        select(*columns)
        .select_from(Expert)
        .join(stats, stats.c.expert_id == Expert.id)
        .where(Expert.deleted_at.is_(None), *where)
    )
    return policy.scope_query(user, Expert, query)


def expert_counts(user: User, now: datetime | None = None) -> dict[str, int]:
    """How many experts each basket holds, in one query."""
    now = now or utcnow()
    stats = _waiting_stats(now, Delays.from_config())
    desk = desk_of(user)
    counts = [func.count(Expert.id).filter(and_(*_expert_in(basket, stats, now, desk))) for basket in EXPERT_BASKETS]
    row = db.session.execute(_experts_select(user, stats, *counts)).one()
    return {basket: count or 0 for basket, count in zip(EXPERT_BASKETS, row, strict=True)}


@dataclass
class ExpertItem:
    expert: Expert
    waiting: int
    old: int
    oldest_days: int
    absence: str | None = None
    last_activity: datetime | None = None
    last_reminder: LastReminder | None = None
    notes: list[ReminderNote] = field(default_factory=list)


def _weeks(now: datetime) -> Iterable[str]:
    for back in range(REMINDER_WEEKS):
        year, week, _day = in_paris(now - timedelta(weeks=back)).isocalendar()
        yield f"{year}-W{week:02d}"


def expert_basket(user: User, basket: str, *, page: int = 1, now: datetime | None = None) -> Page:
    """One page of an experts basket: the most waiting first, then the longest waiting."""
    if basket not in EXPERT_BASKETS:
        raise ServiceError("Panier inconnu.")
    now = now or utcnow()
    stats = _waiting_stats(now, Delays.from_config())
    where = _expert_in(basket, stats, now, desk_of(user))
    query = (
        _experts_select(user, stats, Expert, stats.c.waiting, stats.c.old, stats.c.oldest, where=where)
        .options(selectinload(Expert.antenne).selectinload(Antenne.institution))
        .order_by(stats.c.waiting.desc(), stats.c.oldest, Expert.id)
    )
    rows, total, page, pages = _paged(query, page, _experts_select(user, stats, func.count(Expert.id), where=where))
    today = in_paris(now).date()
    items = [
        ExpertItem(expert, waiting, old or 0, (now - oldest).days, absence_text(expert, today))
        for expert, waiting, old, oldest in rows
    ]
    by_id = {item.expert.id: item for item in items}
    if by_id:
        for expert_id, taken, closed in db.session.execute(
            select(Match.expert_id, func.max(Match.taken_care_at), func.max(Match.closed_at))
            .where(Match.expert_id.in_(list(by_id)))
            .group_by(Match.expert_id)
        ):
            by_id[expert_id].last_activity = max((d for d in (taken, closed) if d is not None), default=None)
        wanted = {}
        for week in _weeks(now):
            for expert_id in by_id:
                wanted[f"expert:{expert_id}:{RECAP}:{week}"] = (expert_id, "récapitulatif hebdomadaire")
                wanted[f"expert:{expert_id}:{MANUAL}:{week}"] = (expert_id, "relance")
        for expert_id, reminder in _last_reminders(wanted).items():
            by_id[expert_id].last_reminder = reminder
        for expert_id, notes in _visible_notes(user, ReminderNote.expert_id, list(by_id)).items():
            by_id[expert_id].notes = notes
    return Page(items, total, page, pages)


# ---------------------------------------------------------------- what the desk does


def _check_scope(user: User, record: Need | Expert) -> None:
    if not policy.in_scope(user, record):
        raise ServiceError("Cet élément ne fait pas partie de votre périmètre.")


def mark_done(user: User, *, basket: str, need: Need | None = None, expert: Expert | None = None) -> ReminderMark:
    """« Traité »: clear ``need`` (or ``expert``) from ``basket`` at the user's desk."""
    target = need if need is not None else expert
    baskets = NEED_BASKETS if need is not None else EXPERT_BASKETS
    if target is None or basket not in baskets:
        raise ServiceError("Panier inconnu.")
    desk = desk_of(user)
    _check_scope(user, target)
    column = ReminderMark.need_id if need is not None else ReminderMark.expert_id
    mark = db.session.scalar(
        select(ReminderMark).where(column == target.id, ReminderMark.basket == basket, ReminderMark.desk == desk)
    )
    with acting_as(actor_label(user), user.id):
        if mark is None:
            mark = ReminderMark(basket=basket, desk=desk)
            setattr(mark, column.key, target.id)
            db.session.add(mark)
        mark.user_id = user.id
        mark.created_at = utcnow()
        db.session.flush()
    return mark


def add_note(user: User, *, body: str, need: Need | None = None, expert: Expert | None = None) -> ReminderNote:
    """A note of the user's desk on a need or an expert of their scope."""
    target = need if need is not None else expert
    if target is None:
        raise ServiceError("Rien à annoter.")
    desk = desk_of(user)
    _check_scope(user, target)
    text = clean_note(body, MAX_NOTE_LENGTH)
    note = ReminderNote(desk=desk, user_id=user.id, body=text)
    if need is not None:
        note.need_id = need.id
    else:
        note.expert_id = expert.id
    with acting_as(actor_label(user), user.id):
        db.session.add(note)
        db.session.flush()
    return note


def _manual_key(expert_id: int, now: datetime) -> str:
    year, week, _day = in_paris(now).isocalendar()
    return f"expert:{expert_id}:{MANUAL}:{year}-W{week:02d}"


def remind_expert(user: User, expert: Expert, *, now: datetime | None = None) -> OutboundEmail:
    """« Relancer »: email the expert the list of their waiting requests, once a week at most
    (whoever sends it: staff and referents share the week's relance)."""
    now = now or utcnow()
    desk = desk_of(user)
    _check_scope(user, expert)
    if expert.deleted_at is not None:
        raise ServiceError("Cet expert a été supprimé de l'annuaire.")
    if not expert.email:
        raise ServiceError("Cet expert n'a pas d'adresse électronique.")
    today: date = in_paris(now).date()
    if is_absent(expert, today):
        raise ServiceError(f"{absence_text(expert, today)} : la relance attendra son retour.")
    key = _manual_key(expert.id, now)
    already = db.session.scalar(select(OutboundEmail.created_at).where(OutboundEmail.key == key))
    if already is not None:
        raise ServiceError(f"Cet expert a déjà été relancé cette semaine, le {in_paris(already):%d/%m/%Y}.")
    delays = Delays.from_config()
    waiting_condition = and_(Match.expert_id == expert.id, *still_waiting(now, delays))
    waiting = db.session.scalar(
        select(func.count()).select_from(Match).join(Need, Match.need_id == Need.id).where(waiting_condition)
    )
    if not waiting:
        raise ServiceError("Cet expert n'a aucune demande en attente : rien à relancer.")
    matches = list(
        db.session.scalars(
            select(Match)
            .join(Need, Match.need_id == Need.id)
            .where(waiting_condition)
            .options(*listed_match_options())
            .order_by(Match.created_at, Match.id)
            .limit(RECAP_LISTED)
        )
    )
    sender = (
        "L'équipe Place des Entreprises"
        if desk == STAFF_DESK
        else f"{user.full_name or user.email} ({user.institution.name})"
    )
    with acting_as(actor_label(user), user.id):
        return queue_email(
            key,
            to=expert.email,
            template="followup_expert_reminder",
            context={
                **waiting_list_context(expert, matches, waiting, now),
                "sender": sender,
                "contact_email": current_app.config["CONTACT_EMAIL"],
            },
        )


# ---------------------------------------------------------------- shared survey answers


def answers_for_desk(user: User, *, page: int = 1) -> Page:
    """The businesses' answers the desk may read, newest first: staff every answer, a referent
    those staff shared for needs their experts closed with help."""
    query = select(SatisfactionAnswer)
    if not policy.is_staff(user):
        desk_of(user)  # refuses anyone without a live scope
        experts = policy.scope_query(user, Expert, select(Expert.id))
        query = query.where(SatisfactionAnswer.shared_at.is_not(None), closed_with_help_by(experts))
    count = select(func.count()).select_from(query.subquery())
    query = query.options(
        selectinload(SatisfactionAnswer.need).selectinload(Need.subject),
        selectinload(SatisfactionAnswer.need).selectinload(Need.facility).selectinload(Facility.company),
    ).order_by(SatisfactionAnswer.updated_at.desc(), SatisfactionAnswer.id.desc())
    rows, total, page, pages = _paged(query, page, count)
    return Page([row[0] for row in rows], total, page, pages)
