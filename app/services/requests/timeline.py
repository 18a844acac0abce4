"""A need's story in one list, oldest first: what happened to it and its matches (the audit
trail), every email sent about it with its delivery, the experts' thread, the staff's internal
notes and who follows it.

Staff reading a need want one answer to « what happened, who did it, did the email leave? »
instead of five tables. Each source is read with a fixed number of queries (matches, two for
the audit trail, experts, emails, thread, notes, stars), so a need with a long life costs what a
new one costs.

Emails are found by their outbox keys (``services.outbox``): ``need:<id>:…`` and
``comments:<id>:…`` (the thread's digests, ``services.discussion``), ``match:<id>:…`` for every
match the need has or had (a reassigned match is deleted; ``services.needs`` records its id in
the need's audit trail), and ``solicitation:<id>:…`` for the request it came from. A « Renvoyer »
copy is the original key followed by ``:renvoi:<n>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from app.dates import as_utc
from app.extensions import db
from app.models import (
    EMAIL_STATE_LABELS,
    MATCH_STATUS_LABELS,
    NEED_STATUS_LABELS,
    Antenne,
    AuditEvent,
    Expert,
    Match,
    Need,
    NeedStar,
    OutboundEmail,
    User,
)
from app.models.audit import REASSIGNED_EXPERT, REASSIGNED_MATCH
from app.models.outbox import EmailState
from app.services.messaging.discussion import author_label, thread
from app.services.messaging.outbox import LOGGED_ONLY, RESEND_MARK
from app.services.requests.notes import notes_for

STAFF_PREFIX = "Équipe"
SYSTEM_LABEL = "Système"

# Same-instant entries (one transaction writes a change, its audit events and its emails) read
# best cause first: the change, then what it did to the matches, then the emails it caused.
_KIND_ORDER = {"need": 0, "match": 1, "email": 2, "comment": 3, "note": 4, "star": 5}

# Bookkeeping columns that change without anyone deciding anything.
_IGNORED_FIELDS = {"search_document", "updated_at", "created_at"}
_NEED_FIELD_LABELS = {
    "description": "Description",
    "subject_id": "Sujet",
    "facility_id": "Établissement",
    "contact_id": "Contact",
    "solicitation_id": "Sollicitation",
    "status": "Statut",
}
_MATCH_FIELD_LABELS = {
    "expert_id": "Expert",
    "status": "Statut",
    "zone": "Entrée de zone",
    "zone_owner": "Zone de",
    "taken_care_at": "Prise en charge le",
    "closed_at": "Clôturée le",
}
_ZONE_OWNER_LABELS = {"antenne": "zone de l'antenne", "expert": "zone propre de l'expert"}

# What each email event is, by the last part of its key.
_EMAIL_LABELS = {
    ("solicitation", "confirmation"): "Confirmation de la demande envoyée à l'entreprise",
    ("solicitation", "canceled"): "Abandon de la demande annoncé à l'entreprise",
    ("solicitation", "suivi"): "« Suivi de votre demande » envoyé à l'entreprise (relance du 9e jour)",
    ("need", "echec"): "Échec de la demande annoncé à l'entreprise",
    ("match", "derniere-chance"): "« Dernière chance » envoyée à l'expert",
    ("need", "taken_care"): "« Prise en charge » annoncée à l'entreprise",
    ("match", "new"): "Nouvelle demande envoyée à l'expert",
    ("match", "not_reachable"): "« Appel manqué » : coordonnées de l'expert envoyées à l'entreprise",
    ("match", "reassigned"): "Réattribution annoncée à l'ancien expert",
    ("comments", None): "Nouveaux messages de la discussion notifiés",
}

_EXPERT_ACTOR = re.compile(r"expert (?P<email>.+) \(lien\)")


@dataclass(frozen=True)
class EmailDelivery:
    """Where an outbox row stands, as the timeline shows it (with its id for « Renvoyer »)."""

    id: int
    key: str
    recipient: str
    subject: str
    state: str
    state_label: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None

    @property
    def failed(self) -> bool:
        return self.state == EmailState.FAILED


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the need's story.

    ``changes`` lists field changes as ``(label, old, new)`` strings; ``match_id`` points at a
    match that still exists (for a link), ``email`` at an outbox row.
    """

    at: datetime
    kind: str  # need, match, email, comment, note, star
    actor: str
    text: str
    detail: str | None = None
    match_id: int | None = None
    email: EmailDelivery | None = None
    changes: tuple[tuple[str, str, str], ...] = field(default=())


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- reading the sources


def _need_events(need: Need) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "Need", AuditEvent.object_id == need.id)
            .options(selectinload(AuditEvent.user))
            .order_by(AuditEvent.created_at, AuditEvent.id)
        )
    )


def _reassignments(need_events: Iterable[AuditEvent]) -> list[tuple[AuditEvent, int | None, int | None]]:
    """The need's reassignment events, each with its old and new match ids."""
    found = []
    for event in need_events:
        pair = (event.changes or {}).get(REASSIGNED_MATCH)
        if isinstance(pair, list) and len(pair) == 2:
            found.append((event, _int(pair[0]), _int(pair[1])))
    return found


def _match_ids(need: Need, need_events: Iterable[AuditEvent]) -> tuple[list[Match], set[int]]:
    """The need's matches now, and the ids of every match it ever had (removed ones included)."""
    matches = list(db.session.scalars(select(Match).where(Match.need_id == need.id).order_by(Match.id)))
    ids = {match.id for match in matches}
    for _event, old_id, new_id in _reassignments(need_events):
        ids.update(i for i in (old_id, new_id) if i is not None)
    return matches, ids


def _emails(need: Need, match_ids: Iterable[int]) -> list[OutboundEmail]:
    prefixes = [f"need:{need.id}:", f"comments:{need.id}:"]
    prefixes += [f"match:{ident}:" for ident in sorted(match_ids)]
    if need.solicitation_id is not None:
        prefixes.append(f"solicitation:{need.solicitation_id}:")
    query = (
        select(OutboundEmail)
        .where(or_(*(OutboundEmail.key.startswith(prefix, autoescape=True) for prefix in prefixes)))
        .order_by(OutboundEmail.created_at, OutboundEmail.id)
    )
    return list(db.session.scalars(query))


def need_email_ids(need: Need) -> set[int]:
    """The outbox rows the need's timeline shows (what its page may resend)."""
    _matches, match_ids = _match_ids(need, _need_events(need))
    return {email.id for email in _emails(need, match_ids)}


# ---------------------------------------------------------------- wording


def _expert_label(expert: Expert | None) -> str:
    if expert is None:
        return "un expert"
    name = expert.full_name or f"expert #{expert.id}"
    institution = expert.antenne.institution.name if expert.antenne and expert.antenne.institution else ""
    return f"{name} ({institution})" if institution else name


def _user_label(user: User | None, fallback: str = "") -> str:
    name = str(user) if user is not None else fallback
    return f"{STAFF_PREFIX} : {name}" if name else STAFF_PREFIX


def _actor(event: AuditEvent, experts_by_email: dict[str, Expert]) -> str:
    """Who did it: a staff member, an expert through their signed link, or the service itself."""
    if event.user_id is not None:
        return _user_label(event.user, event.actor)
    label = event.actor or ""
    found = _EXPERT_ACTOR.fullmatch(label)
    if found:
        expert = experts_by_email.get(found.group("email").casefold())
        name = expert.full_name if expert is not None else found.group("email")
        return f"{name} (expert, par son lien)"
    if label in ("système", "anonyme", ""):
        return SYSTEM_LABEL
    return f"{SYSTEM_LABEL} ({label})"


def _plain(value: Any) -> str:
    return "∅" if value is None or value == "" else str(value)


def _field_changes(
    changes: dict[str, Any], labels: dict[str, str], skip: Iterable[str] = ()
) -> tuple[tuple[str, str, str], ...]:
    skipped = _IGNORED_FIELDS | set(skip)
    rows = []
    for name, values in (changes or {}).items():
        if name in skipped or not isinstance(values, list) or len(values) != 2:
            continue
        rows.append((labels.get(name, name), _plain(values[0]), _plain(values[1])))
    return tuple(rows)


def _status_change(changes: dict[str, Any], labels: dict[str, str]) -> tuple[str, str] | None:
    values = (changes or {}).get("status")
    if not isinstance(values, list) or len(values) != 2:
        return None
    return labels.get(values[0], _plain(values[0])), labels.get(values[1], _plain(values[1]))


def _zone_text(changes: dict[str, Any]) -> str:
    zone = ((changes or {}).get("zone") or [None, None])[1]
    owner = ((changes or {}).get("zone_owner") or [None, None])[1]
    return ", ".join(part for part in (zone, _ZONE_OWNER_LABELS.get(owner or "")) if part)


def _email_label(key: str) -> str:
    base, _mark, copy = key.partition(RESEND_MARK)
    parts = base.split(":")
    kind = parts[0]
    event = parts[2] if len(parts) > 2 and kind != "comments" else None
    label = _EMAIL_LABELS.get((kind, event), "Courriel envoyé")
    return f"{label} (renvoi n° {copy})" if copy else label


def _delivery(email: OutboundEmail) -> EmailDelivery:
    if email.state == EmailState.SENT and email.last_error == LOGGED_ONLY:
        state_label = "Journalisé, non envoyé"
    else:
        state_label = EMAIL_STATE_LABELS.get(email.state, email.state)
    return EmailDelivery(
        id=email.id,
        key=email.key,
        recipient=email.recipient,
        subject=email.subject,
        state=email.state,
        state_label=state_label,
        attempts=email.attempts,
        last_error=email.last_error if email.last_error != LOGGED_ONLY else None,
        sent_at=as_utc(email.sent_at) if email.sent_at else None,
        next_attempt_at=as_utc(email.next_attempt_at) if email.next_attempt_at else None,
    )


# ---------------------------------------------------------------- the timeline


def need_timeline(need: Need) -> list[TimelineEntry]:
    """Every entry of the need's story, oldest first (see the module docstring)."""
    need_events = _need_events(need)
    matches, match_ids = _match_ids(need, need_events)
    reassignments = _reassignments(need_events)
    match_events = (
        list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.object_type == "Match", AuditEvent.object_id.in_(sorted(match_ids)))
                .options(selectinload(AuditEvent.user))
                .order_by(AuditEvent.created_at, AuditEvent.id)
            )
        )
        if match_ids
        else []
    )

    # Which expert each match (present or removed) belongs to.
    expert_of: dict[int, int] = {match.id: match.expert_id for match in matches}
    for event in match_events:
        if event.action == "create" and event.object_id not in expert_of:
            expert_id = _int(((event.changes or {}).get("expert_id") or [None, None])[1])
            if expert_id is not None:
                expert_of[event.object_id] = expert_id
    for event, old_id, new_id in reassignments:
        old_expert, new_expert = ((event.changes or {}).get(REASSIGNED_EXPERT) or [None, None])[:2]
        for match_id, expert_id in ((old_id, old_expert), (new_id, new_expert)):
            if match_id is not None and _int(expert_id) is not None:
                expert_of.setdefault(match_id, _int(expert_id))
    expert_ids = set(expert_of.values())
    for event, _old, _new in reassignments:
        expert_ids.update(i for i in map(_int, (event.changes or {}).get(REASSIGNED_EXPERT) or []) if i is not None)
    experts = (
        {
            expert.id: expert
            for expert in db.session.scalars(
                select(Expert)
                .where(Expert.id.in_(sorted(expert_ids)))
                .options(selectinload(Expert.antenne).selectinload(Antenne.institution))
            )
        }
        if expert_ids
        else {}
    )
    experts_by_email = {expert.email.casefold(): expert for expert in experts.values() if expert.email}

    entries: list[TimelineEntry] = []
    reassigned_old = {old for _e, old, _n in reassignments if old is not None}
    reassigned_new = {new for _e, _o, new in reassignments if new is not None}
    present = {match.id for match in matches}

    for event in need_events:
        entry = _need_entry(event, experts, experts_by_email)
        if entry is not None:
            entries.append(entry)
    for event in match_events:
        expert = experts.get(expert_of.get(event.object_id, -1))
        entry = _match_entry(
            event,
            expert,
            experts_by_email,
            present=event.object_id in present,
            reassigned_old=event.object_id in reassigned_old,
            reassigned_new=event.object_id in reassigned_new,
        )
        if entry is not None:
            entries.append(entry)

    for email in _emails(need, match_ids):
        entries.append(
            TimelineEntry(
                at=as_utc(email.created_at),
                kind="email",
                actor=SYSTEM_LABEL,
                text=f"{_email_label(email.key)} — {email.recipient}",
                detail=email.subject,
                email=_delivery(email),
            )
        )
    for comment in thread(need):
        by_email = " (réponse par email)" if comment.source == "email" else ""
        entries.append(
            TimelineEntry(
                at=as_utc(comment.created_at),
                kind="comment",
                actor=author_label(comment) if comment.expert_id else _user_label(comment.user),
                text=f"Message sur la discussion{by_email}",
                detail=comment.body,
            )
        )
    for note in notes_for(need):
        entries.append(
            TimelineEntry(
                at=as_utc(note.created_at),
                kind="note",
                actor=_user_label(note.user),
                text="Note interne",
                detail=note.body,
            )
        )
    stars = db.session.execute(
        select(NeedStar.created_at, User)
        .join(User, User.id == NeedStar.user_id)
        .where(NeedStar.need_id == need.id)
        .order_by(NeedStar.created_at, NeedStar.id)
    )
    for created_at, user in stars:
        entries.append(
            TimelineEntry(at=as_utc(created_at), kind="star", actor=_user_label(user), text="Suit ce besoin")
        )

    indexed = list(enumerate(entries))
    indexed.sort(key=lambda pair: (pair[1].at, _KIND_ORDER.get(pair[1].kind, 9), pair[0]))
    return [entry for _i, entry in indexed]


def _need_entry(
    event: AuditEvent, experts: dict[int, Expert], experts_by_email: dict[str, Expert]
) -> TimelineEntry | None:
    changes = event.changes or {}
    actor = _actor(event, experts_by_email)
    at = as_utc(event.created_at)
    if event.action == "create":
        status = NEED_STATUS_LABELS.get((changes.get("status") or [None, None])[1])
        return TimelineEntry(at, "need", actor, "Besoin créé" + (f" (« {status} »)" if status else ""))
    if event.action == "delete":
        return TimelineEntry(at, "need", actor, "Besoin supprimé")
    if REASSIGNED_MATCH in changes:
        old_id, new_id = [_int(v) for v in (changes.get(REASSIGNED_EXPERT) or [None, None])[:2]]
        old_status = (changes.get("reassigned_status") or [None])[0]
        was = f" (elle était « {MATCH_STATUS_LABELS[old_status]} »)" if old_status in MATCH_STATUS_LABELS else ""
        text = (
            f"Mise en relation réattribuée de {_expert_label(experts.get(old_id))} "
            f"à {_expert_label(experts.get(new_id))}{was}"
        )
        return TimelineEntry(at, "need", actor, text)
    status = _status_change(changes, NEED_STATUS_LABELS)
    others = _field_changes(changes, _NEED_FIELD_LABELS, skip=("status",))
    if status is not None:
        return TimelineEntry(at, "need", actor, f"Statut du besoin : {status[0]} → {status[1]}", changes=others)
    if others:
        return TimelineEntry(at, "need", actor, "Besoin modifié", changes=others)
    return None


def _match_entry(
    event: AuditEvent,
    expert: Expert | None,
    experts_by_email: dict[str, Expert],
    *,
    present: bool,
    reassigned_old: bool,
    reassigned_new: bool,
) -> TimelineEntry | None:
    changes = event.changes or {}
    actor = _actor(event, experts_by_email)
    at = as_utc(event.created_at)
    who = _expert_label(expert)
    match_id = event.object_id if present else None
    if event.action == "create":
        if reassigned_new:
            text = f"Besoin confié à {who} (réattribution)"
        elif changes.get("zone") is None and changes.get("zone_owner") is None:
            text = f"{who} ajouté(e) au besoin par l'équipe"
        else:
            text = f"Besoin envoyé à {who} (entrée de zone : {_zone_text(changes)})"
        return TimelineEntry(at, "match", actor, text, match_id=match_id)
    if event.action == "delete":
        if reassigned_old:
            return None  # the need's reassignment entry says it, with both experts
        return TimelineEntry(at, "match", actor, f"Mise en relation de {who} retirée")
    status = _status_change(changes, MATCH_STATUS_LABELS)
    if status is not None:
        return TimelineEntry(at, "match", actor, f"{who} : {status[0]} → {status[1]}", match_id=match_id)
    others = _field_changes(changes, _MATCH_FIELD_LABELS)
    if others:
        return TimelineEntry(
            at, "match", actor, f"Mise en relation de {who} modifiée", match_id=match_id, changes=others
        )
    return None
