"""Follow-up: no need dies in silence.

Every step is a date rule over the requests and needs, and an email under an event key of its
own (``solicitation:12:suivi``, ``match:40:derniere-chance``): the outbox writes a key once, so
a step runs at most once per request or match however often the follow-up runs, and an
operator may run it again after an outage (``flask followup run --now …``). A step also has a
window: it is not sent once a later step has made it pointless (no « Suivi » on day 50 for a
need given up on day 45), which is what makes catching up after days without a scheduler safe.

Selection and sending read the same rule; the sending re-reads each row, so a need taken in
charge between the two is skipped.

Steps: the business's « Suivi de votre demande » (day 9), each waiting expert's « Dernière
chance » (day 21), the business's « Échec de votre demande » (day 45), which gives the need up
(staff may send it earlier for a need every expert refused), the experts' weekly recap, and the
satisfaction survey 10 days after the first match closed as « Aide proposée », and each partner
referent's weekly list of their experts who let requests wait more than 9 days.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import selectinload

from app import policy
from app.dates import in_paris, paris_text
from app.extensions import db
from app.models import Antenne, Expert, Facility, Match, Need, OutboundEmail, Solicitation, User
from app.models.base import utcnow
from app.models.requests import MatchStatus, NeedStatus, SolicitationStatus
from app.services.accounts.users import require_staff
from app.services.addressbook.absences import is_absent
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging import links
from app.services.messaging.expert_emails import need_context
from app.services.messaging.outbox import queue_email
from app.services.requests.matches import TAKEN_CARE_STATUSES

REMINDER = "suivi"
LAST_CHANCE = "derniere-chance"
FAILURE = "echec"
RECAP = "recapitulatif"
SURVEY = "satisfaction"
REFERENT_DIGEST = "experts-en-attente"
# The weekly recap: matches waiting since at least this many days, at most this many listed.
RECAP_MIN_DAYS = 4
RECAP_LISTED = 7
# Tuesday to Friday (Paris): a recap the scheduler missed on Tuesday still helps that week;
# on the weekend the next Tuesday's is near.
RECAP_WEEKDAYS = (1, 2, 3, 4)
# The referents' weekly list names this many experts at most; the relances desk has them all.
DIGEST_LISTED = 20


def _day(value: datetime) -> str:
    return paris_text(value, "%d/%m/%Y")


@dataclass(frozen=True)
class Planned:
    """One email a step sends (or would send, for ``--dry-run``)."""

    step: str
    key: str
    recipient: str
    about: str
    send: Callable[[], bool]

    def line(self) -> str:
        return f"{self.step} · {self.recipient} · {self.about} [{self.key}]"


@dataclass(frozen=True)
class Delays:
    reminder: timedelta
    last_chance: timedelta
    failure: timedelta
    # How late a failure is still announced: after an outage, or the first run over an old
    # backlog, a need given up long ago gets no email (it already shows expired everywhere).
    catch_up: timedelta
    survey: timedelta

    @classmethod
    def from_config(cls) -> Delays:
        config = current_app.config
        return cls(
            reminder=timedelta(days=config["FOLLOWUP_REMINDER_DAYS"]),
            last_chance=timedelta(days=config["FOLLOWUP_LAST_CHANCE_DAYS"]),
            failure=timedelta(days=config["FOLLOWUP_FAILURE_DAYS"]),
            catch_up=timedelta(days=config["FOLLOWUP_CATCH_UP_DAYS"]),
            survey=timedelta(days=config["FOLLOWUP_SURVEY_DAYS"]),
        )


def run_followup(now: datetime | None = None, *, dry_run: bool = False) -> list[Planned]:
    """Every follow-up email due at ``now``, sent (queued in the caller's transaction) unless
    ``dry_run``; returns what was sent, or would be. Running it twice sends nothing twice."""
    now = now or utcnow()
    delays = Delays.from_config()
    plan = [
        *_business_reminders(now, delays),
        *_last_chances(now, delays),
        *_failures(now, delays),
        *_weekly_recaps(now, delays),
        *_surveys(now, delays),
        *_referent_digests(now, delays),
    ]
    if dry_run:
        return plan
    return [item for item in plan if item.send()]


def _not_written(key) -> object:
    return ~exists().where(OutboundEmail.key == key)


def _still_waiting(solicitation_id) -> object:
    """A request none of whose needs anybody took, with a need still waiting for an answer."""
    taken = exists().where(Need.solicitation_id == solicitation_id, Need.status.in_(TAKEN_CARE_STATUSES))
    waiting = exists().where(
        Need.solicitation_id == solicitation_id, Need.status == NeedStatus.QUO, Need.abandoned_at.is_(None)
    )
    return and_(~taken, waiting)


# ---------------------------------------------------------------- the business, day 9


def _reminder_key(solicitation_id: int) -> str:
    return f"solicitation:{solicitation_id}:{REMINDER}"


def _business_reminders(now: datetime, delays: Delays) -> Iterator[Planned]:
    key = Solicitation.id.cast(db.String)
    rows = db.session.scalars(
        select(Solicitation)
        .where(
            Solicitation.status == SolicitationStatus.PROCESSED,
            Solicitation.created_at <= now - delays.reminder,
            Solicitation.created_at > now - delays.failure,
            _still_waiting(Solicitation.id),
            _not_written("solicitation:" + key + f":{REMINDER}"),
        )
        .options(selectinload(Solicitation.subject))
        .order_by(Solicitation.created_at, Solicitation.id)
    )
    for solicitation in rows:
        yield Planned(
            REMINDER,
            _reminder_key(solicitation.id),
            solicitation.email,
            f"demande du {_day(solicitation.created_at)} « {solicitation.subject.label} »",
            lambda s=solicitation: _send_reminder(s, now, delays),
        )


def _send_reminder(solicitation: Solicitation, now: datetime, delays: Delays) -> bool:
    """Re-read at send time: a need taken in charge since the selection cancels the step."""
    still = db.session.scalar(
        select(Solicitation.id).where(
            Solicitation.id == solicitation.id,
            Solicitation.created_at > now - delays.failure,
            _still_waiting(Solicitation.id),
        )
    )
    if still is None:
        return False
    queue_email(
        _reminder_key(solicitation.id),
        to=solicitation.email,
        template="followup_business_reminder",
        context={
            "full_name": solicitation.full_name,
            "subject": solicitation.subject.label,
            "requested_on": _day(solicitation.created_at),
            "contact_email": current_app.config["CONTACT_EMAIL"],
        },
    )
    return True


# ---------------------------------------------------------------- each waiting expert, day 21


def _last_chance_key(match_id: int) -> str:
    return f"match:{match_id}:{LAST_CHANCE}"


def still_waiting(now: datetime, delays: Delays, *, since: timedelta | None = None) -> list:
    """The one definition of a match still waiting for its expert's answer (over ``Match``
    joined to ``Need``): not answered, its need not given up, sent within the failure delay,
    and at least ``since`` ago. The recap, the last chance, the referents' list, the relances
    desk and « Relancer » all read it."""
    conditions = [Match.status == MatchStatus.QUO, Need.abandoned_at.is_(None), Match.created_at > now - delays.failure]
    if since is not None:
        conditions.append(Match.created_at <= now - since)
    return conditions


def _waiting_match(now: datetime, delays: Delays) -> list:
    """A match still waiting on a need nobody took, sent between the last-chance and the failure days."""
    return [*still_waiting(now, delays, since=delays.last_chance), Need.status == NeedStatus.QUO]


def _last_chances(now: datetime, delays: Delays) -> Iterator[Planned]:
    key = Match.id.cast(db.String)
    rows = db.session.scalars(
        select(Match)
        .join(Need, Match.need_id == Need.id)
        .join(Expert, Match.expert_id == Expert.id)
        .where(
            *_waiting_match(now, delays),
            Expert.deleted_at.is_(None),
            Expert.email.is_not(None),
            _not_written("match:" + key + f":{LAST_CHANCE}"),
        )
        .options(selectinload(Match.expert), selectinload(Match.need))
        .order_by(Match.created_at, Match.id)
    )
    today = in_paris(now).date()
    for match in rows:
        if is_absent(match.expert, today):
            continue  # the colleagues of the need are asked; an absent expert cannot answer
        yield Planned(
            LAST_CHANCE,
            _last_chance_key(match.id),
            match.expert.email,
            f"besoin #{match.need_id} envoyé le {_day(match.created_at)}",
            lambda m=match: _send_last_chance(m, now, delays),
        )


def _send_last_chance(match: Match, now: datetime, delays: Delays) -> bool:
    still = db.session.scalar(
        select(Match.id).join(Need, Match.need_id == Need.id).where(Match.id == match.id, *_waiting_match(now, delays))
    )
    if still is None:
        return False
    _queue_last_chance(match, delays)
    return True


def _queue_last_chance(match: Match, delays: Delays) -> None:
    queue_email(
        _last_chance_key(match.id),
        to=match.expert.email,
        template="followup_last_chance",
        context={
            **need_context(match),
            "expert_name": match.expert.full_name,
            "sent_on": _day(match.created_at),
            "failure_on": _day(match.created_at + delays.failure),
            "expert_url": links.expert_url(match),
        },
    )


def send_last_chance_now(need: Need, *, user: User, now: datetime | None = None) -> list[Match]:
    """Staff's « Envoyer la dernière chance » before day 21: each expert still waiting on a need
    nobody took gets it now (under the same key, so day 21 does not send it again). Absent
    experts and those who already had it are skipped; returns the matches emailed."""
    require_staff(user, "envoyer la « Dernière chance »")
    now = now or utcnow()
    if need.status != NeedStatus.QUO or need.abandoned_at is not None:
        raise ServiceError("Ce besoin n'attend plus de réponse : la « Dernière chance » ne s'applique plus.")
    delays = Delays.from_config()
    today = in_paris(now).date()
    written = set(
        db.session.scalars(
            select(OutboundEmail.key).where(OutboundEmail.key.in_([_last_chance_key(m.id) for m in need.matches]))
        )
    )
    sent = []
    with acting_as(actor_label(user), user.id):
        for match in need.matches:
            expert = match.expert
            if (
                match.status != MatchStatus.QUO
                or expert.deleted_at is not None
                or not expert.email
                or is_absent(expert, today)
                or _last_chance_key(match.id) in written
            ):
                continue
            _queue_last_chance(match, delays)
            sent.append(match)
    if not sent:
        raise ServiceError(
            "Aucun expert à relancer : tous ont déjà reçu la « Dernière chance », sont absents ou ont répondu."
        )
    return sent


# ---------------------------------------------------------------- the business, day 45: the need fails


def _failure_key(need_id: int) -> str:
    return f"need:{need_id}:{FAILURE}"


def first_sent():
    """When the need first reached an expert (the follow-up's clock for a need)."""
    return select(func.min(Match.created_at)).where(Match.need_id == Need.id).correlate(Need).scalar_subquery()


def _failing(now: datetime, delays: Delays) -> list:
    """A need nobody took, first sent between the failure day and the end of its catch-up."""
    sent = first_sent()
    return [
        Need.status == NeedStatus.QUO,
        Need.abandoned_at.is_(None),
        sent <= now - delays.failure,
        sent > now - delays.failure - delays.catch_up,
    ]


def _failures(now: datetime, delays: Delays) -> Iterator[Planned]:
    rows = db.session.scalars(
        select(Need)
        .where(
            *_failing(now, delays),
        )
        .options(selectinload(Need.contact), selectinload(Need.subject))
        .order_by(Need.created_at, Need.id)
    )
    for need in rows:
        yield Planned(
            FAILURE,
            _failure_key(need.id),
            need.contact.email,
            f"besoin #{need.id} « {need.subject.label} », sans preneur",
            lambda n=need: _send_failure(n, now, delays),
        )


def _send_failure(need: Need, now: datetime, delays: Delays) -> bool:
    still = db.session.scalar(select(Need.id).where(Need.id == need.id, *_failing(now, delays)))
    if still is None:
        return False
    _give_up(need, now)
    return True


def announce_failure(need: Need, *, user: User, now: datetime | None = None) -> None:
    """Staff's « Annoncer l'échec », before day 45, for a need every expert refused."""
    require_staff(user, "annoncer l'échec d'une demande")
    db.session.refresh(need, with_for_update=True)
    if need.abandoned_at is not None:
        raise ServiceError(f"L'échec de ce besoin a déjà été annoncé le {_day(need.abandoned_at)}.")
    if need.status != NeedStatus.NOT_FOR_ME:
        raise ServiceError(
            "Seul un besoin refusé par tous ses experts peut être déclaré en échec avant l'heure ; "
            "les autres le sont automatiquement après le délai de suivi."
        )
    with acting_as(actor_label(user), user.id):
        _give_up(need, now or utcnow())


def _give_up(need: Need, now: datetime) -> None:
    """Tell the business, and mark the need given up (its waiting matches are then expired)."""
    need.abandoned_at = now
    queue_email(
        _failure_key(need.id),
        to=need.contact.email,
        template="followup_failure",
        context={
            "full_name": need.contact.full_name,
            "subject": need.subject.label,
            "requested_on": _day(need.created_at),
            "contact_email": current_app.config["CONTACT_EMAIL"],
        },
    )
    db.session.flush()


# ---------------------------------------------------------------- each expert, weekly (Tuesday)


def _recap_key(expert_id: int, now: datetime) -> str:
    year, week, _day_of_week = in_paris(now).isocalendar()
    return f"expert:{expert_id}:{RECAP}:{year}-W{week:02d}"


def _weekly_recaps(now: datetime, delays: Delays) -> Iterator[Planned]:
    """One email per expert with waiting matches: the oldest few listed, the rest counted.

    One windowed query ranks every waiting match per expert; only the listed ones are loaded,
    however large the backlog."""
    if in_paris(now).weekday() not in RECAP_WEEKDAYS:
        return
    ranked = (
        select(
            Match.id.label("match_id"),
            Match.expert_id.label("expert_id"),
            func.row_number().over(partition_by=Match.expert_id, order_by=(Match.created_at, Match.id)).label("rank"),
            func.count().over(partition_by=Match.expert_id).label("waiting"),
        )
        .join(Need, Match.need_id == Need.id)
        .join(Expert, Match.expert_id == Expert.id)
        .where(
            *still_waiting(now, delays, since=timedelta(days=RECAP_MIN_DAYS)),
            Expert.deleted_at.is_(None),
            Expert.email.is_not(None),
        )
        .subquery()
    )
    rows = db.session.execute(
        select(ranked.c.expert_id, ranked.c.match_id, ranked.c.waiting)
        .where(ranked.c.rank <= RECAP_LISTED)
        .order_by(ranked.c.expert_id, ranked.c.rank)
    ).all()
    listed: dict[int, list[int]] = {}
    waiting: dict[int, int] = {}
    for expert_id, match_id, count in rows:
        listed.setdefault(expert_id, []).append(match_id)
        waiting[expert_id] = count
    if not listed:
        return
    written = set(
        db.session.scalars(select(OutboundEmail.key).where(OutboundEmail.key.in_([_recap_key(e, now) for e in listed])))
    )
    experts = {e.id: e for e in db.session.scalars(select(Expert).where(Expert.id.in_(list(listed))))}
    loader = _RecapMatches(listed)
    today = in_paris(now).date()
    for expert_id in listed:
        expert = experts[expert_id]
        key = _recap_key(expert_id, now)
        if key in written or is_absent(expert, today):
            continue  # absent experts are left alone while away
        yield Planned(
            RECAP,
            key,
            expert.email,
            f"{waiting[expert_id]} demande(s) en attente",
            lambda e=expert, n=waiting[expert_id]: _send_recap(e, loader.matches_of(e.id), n, now),
        )


class _RecapMatches:
    """The listed matches of the recaps, loaded a few hundred experts at a time when they are
    sent (never for a plan), instead of four queries per expert."""

    CHUNK = 500

    def __init__(self, listed: dict[int, list[int]]) -> None:
        self.listed = listed
        self.order = list(listed)
        self.loaded: dict[int, list[Match]] = {}

    def matches_of(self, expert_id: int) -> list[Match]:
        if expert_id not in self.loaded:
            start = self.order.index(expert_id)
            chunk = self.order[start : start + self.CHUNK]
            ids = [match_id for e in chunk for match_id in self.listed[e]]
            rows = db.session.scalars(
                select(Match)
                .where(Match.id.in_(ids), Match.status == MatchStatus.QUO)
                .options(*listed_match_options())
                .order_by(Match.created_at, Match.id)
            )
            for e in chunk:
                self.loaded[e] = []
            for match in rows:
                self.loaded[match.expert_id].append(match)
        return self.loaded.pop(expert_id)


def _send_recap(expert: Expert, matches: list[Match], waiting: int, now: datetime) -> bool:
    if not matches:
        return False  # answered since the selection
    queue_email(
        _recap_key(expert.id, now),
        to=expert.email,
        template="followup_weekly_recap",
        context=waiting_list_context(expert, matches, waiting, now),
    )
    return True


def listed_match_options() -> tuple:
    """Loader options for the matches an email lists: their subject, company and commune."""
    return (
        selectinload(Match.need).selectinload(Need.subject),
        selectinload(Match.need).selectinload(Need.facility).selectinload(Facility.company),
        selectinload(Match.need).selectinload(Need.facility).selectinload(Facility.commune),
    )


def waiting_list_context(expert: Expert, matches: list[Match], waiting: int, now: datetime) -> dict:
    """What an email listing an expert's waiting requests says: the weekly recap's, and the
    relances desk's « Relancer »."""
    return {
        "expert_name": expert.full_name,
        "needs": [
            {
                "subject": match.need.subject.label,
                "company_name": match.need.facility.company.name,
                "commune": str(match.need.facility.commune or match.need.facility.commune_code),
                "days": (now - match.created_at).days,
                "url": links.expert_url(match),
            }
            for match in matches
        ],
        "others": max(waiting - len(matches), 0),
        "waiting": waiting,
        "inbox_url": links.inbox_url(expert),
    }


# ---------------------------------------------------------------- the business, after help was offered


def _survey_key(need_id: int) -> str:
    return f"need:{need_id}:{SURVEY}"


def _first_help():
    """When the first of the need's matches closed as « Aide proposée »."""
    return (
        select(func.min(Match.closed_at))
        .where(Match.need_id == Need.id, Match.status == MatchStatus.DONE)
        .correlate(Need)
        .scalar_subquery()
    )


def _surveyable(now: datetime, delays: Delays) -> list:
    first_help = _first_help()
    return [first_help <= now - delays.survey, first_help > now - delays.survey - delays.catch_up]


def _surveys(now: datetime, delays: Delays) -> Iterator[Planned]:
    key = Need.id.cast(db.String)
    rows = db.session.scalars(
        select(Need)
        .where(*_surveyable(now, delays), _not_written("need:" + key + f":{SURVEY}"))
        .options(selectinload(Need.contact), selectinload(Need.subject))
        .order_by(Need.id)
    )
    for need in rows:
        yield Planned(
            SURVEY,
            _survey_key(need.id),
            need.contact.email,
            f"besoin #{need.id} « {need.subject.label} », aide proposée",
            lambda n=need: _send_survey(n),
        )


def _send_survey(need: Need) -> bool:
    url = links.survey_url(need.id)
    queue_email(
        _survey_key(need.id),
        to=need.contact.email,
        template="followup_satisfaction",
        context={
            "full_name": need.contact.full_name,
            "subject": need.subject.label,
            "yes_url": f"{url}?reponse=oui",
            "no_url": f"{url}?reponse=non",
            "survey_url": url,
        },
    )
    return True


# ---------------------------------------------------------------- each partner referent, weekly


def _digest_key(user_id: int, now: datetime) -> str:
    year, week, _day_of_week = in_paris(now).isocalendar()
    return f"user:{user_id}:{REFERENT_DIGEST}:{year}-W{week:02d}"


@dataclass(frozen=True)
class _Late:
    """One expert's requests waiting past the reminder day."""

    expert_id: int
    antenne_id: int
    institution_id: int
    waiting: int
    oldest: datetime


def _late_experts(now: datetime, delays: Delays) -> list[_Late]:
    """Every live expert with requests waiting more than the reminder delay (and not yet
    expired), most waiting first: one grouped query for all the referents."""
    rows = db.session.execute(
        select(Expert.id, Expert.antenne_id, Antenne.institution_id, func.count(), func.min(Match.created_at))
        .join(Match, Match.expert_id == Expert.id)
        .join(Need, Match.need_id == Need.id)
        .join(Antenne, Expert.antenne_id == Antenne.id)
        .where(
            *still_waiting(now, delays, since=delays.reminder),
            Expert.deleted_at.is_(None),
            Antenne.deleted_at.is_(None),
        )
        .group_by(Expert.id, Expert.antenne_id, Antenne.institution_id)
    ).all()
    late = [_Late(*row) for row in rows]
    return sorted(late, key=lambda item: (-item.waiting, item.oldest, item.expert_id))


def _referent_digests(now: datetime, delays: Delays) -> Iterator[Planned]:
    """Once a week (with the experts' recap), each referent gets the list of their experts who
    have requests waiting more than the reminder delay; a referent whose experts are all up to
    date gets nothing."""
    if in_paris(now).weekday() not in RECAP_WEEKDAYS:
        return
    referents = [
        user
        for user in db.session.scalars(
            select(User)
            .where(User.role == "referent", User.deleted_at.is_(None), User.email.is_not(None))
            .options(selectinload(User.institution), selectinload(User.antenne))
            .order_by(User.id)
        )
        if policy.is_referent(user)
    ]
    if not referents:
        return
    late = _late_experts(now, delays)
    if not late:
        return
    written = set(
        db.session.scalars(
            select(OutboundEmail.key).where(OutboundEmail.key.in_([_digest_key(u.id, now) for u in referents]))
        )
    )
    for user in referents:
        if _digest_key(user.id, now) in written:
            continue
        if user.antenne_id is not None:
            theirs = [item for item in late if item.antenne_id == user.antenne_id]
        else:
            theirs = [item for item in late if item.institution_id == user.institution_id]
        if not theirs:
            continue
        yield Planned(
            REFERENT_DIGEST,
            _digest_key(user.id, now),
            user.email,
            f"{len(theirs)} expert(s) avec des demandes en attente depuis plus de {delays.reminder.days} jours",
            lambda u=user, t=theirs: _send_digest(u, t, now, delays),
        )


def _send_digest(user: User, late: list[_Late], now: datetime, delays: Delays) -> bool:
    listed = late[:DIGEST_LISTED]
    experts = {
        e.id: e
        for e in db.session.scalars(
            select(Expert)
            .where(Expert.id.in_([item.expert_id for item in listed]))
            .options(selectinload(Expert.antenne))
        )
    }
    queue_email(
        _digest_key(user.id, now),
        to=user.email,
        template="followup_referent_digest",
        context={
            "full_name": user.full_name or user.email,
            "scope_name": user.antenne.name if user.antenne_id is not None else user.institution.name,
            "days": delays.reminder.days,
            "experts": [
                {
                    "name": experts[item.expert_id].full_name,
                    "antenne": experts[item.expert_id].antenne.name,
                    "waiting": item.waiting,
                    "oldest_days": (now - item.oldest).days,
                }
                for item in listed
            ],
            "others": len(late) - len(listed),
            "needs": sum(item.waiting for item in late),
            "desk_url": f"{current_app.config['BASE_URL']}/admin/relances/experts",
        },
    )
    return True
