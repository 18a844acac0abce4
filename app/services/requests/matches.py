"""Where each expert stands on a need: the match status machine, and the need's derived status.

The transition table is the one the Rails service applies, with one addition its
interface already offers: a closed match (``done*``) may go back to
``taking_care``, the « Annuler » of a closure clicked by mistake, so the expert does not have
to start again from ``quo``.

=====================  ====================================================
from                   allowed next
=====================  ====================================================
quo                    taking_care, not_for_me
not_for_me             quo (undo the refusal)
taking_care            done, done_no_help, done_not_reachable, quo (undo)
done, done_no_help,    taking_care (undo the closure), quo (undo it all)
done_not_reachable
=====================  ====================================================

Timestamps: ``taken_care_at`` is stamped the first time the expert takes
the need (``taking_care`` or a ``done*``; a refusal is not taking care) and cleared on the way
back to ``quo``; ``closed_at`` is stamped on entering a closed status (the three ``done*`` and
``not_for_me``) and cleared on the way back to ``quo`` or ``taking_care``.

The need's status is stored (lists filter on it) and recomputed here on every change, under a
row lock on the need: two experts answering the same need at the same moment are serialised,
so the second one's recomputation sees the first one's answer.

The business is told (when an expert takes its need, and when none can help), through the outbox in the same transaction as
the change, so a refused or rolled back change sends nothing:

- « Prise en charge » when the need becomes taken in charge (its status enters ``taking_care``
  or a ``done*``), once per need ever (key ``need:<id>:taken_care``). It names the expert who
  took it first. An undo and a new click, or a second expert taking it later, send nothing
  more: the business already knows that someone is on it, and every advisor calls anyway;
  several emails for one request read as noise (the reference's one-minute debounce exists
  for the same reason). Unlike the reference, which names only the institution, the email
  names the person, who will call from an unknown number.
- « Appel manqué » when an expert marks the match ``done_not_reachable``, once per match ever
  (key ``match:<id>:not_reachable``), with that expert's phone and email to call back; its
  Reply-To is the expert, so answering the email reaches them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select

from app.extensions import db
from app.models import Match, Need
from app.models.base import utcnow
from app.models.requests import MATCH_STATUS_LABELS, MATCH_STATUSES, MatchStatus, NeedStatus
from app.services.errors import ServiceError
from app.services.messaging.outbox import queue_email
from app.services.requests.validation import display_phone

CLOSED_STATUSES = frozenset(
    {MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE, MatchStatus.NOT_FOR_ME}
)
TAKEN_CARE_STATUSES = frozenset(
    {MatchStatus.TAKING_CARE, MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE}
)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    MatchStatus.QUO: (MatchStatus.TAKING_CARE, MatchStatus.NOT_FOR_ME),
    MatchStatus.NOT_FOR_ME: (MatchStatus.QUO,),
    MatchStatus.TAKING_CARE: (
        MatchStatus.DONE,
        MatchStatus.DONE_NO_HELP,
        MatchStatus.DONE_NOT_REACHABLE,
        MatchStatus.QUO,
    ),
    MatchStatus.DONE: (MatchStatus.TAKING_CARE, MatchStatus.QUO),
    MatchStatus.DONE_NO_HELP: (MatchStatus.TAKING_CARE, MatchStatus.QUO),
    MatchStatus.DONE_NOT_REACHABLE: (MatchStatus.TAKING_CARE, MatchStatus.QUO),
}

# The need's status: the first status that any of its matches has, in this order; a need whose
# matches are all refused (or that has none left) is ``not_for_me``, the team's "refused" basket.
NEED_STATUS_ORDER = (
    NeedStatus.DONE,
    NeedStatus.DONE_NO_HELP,
    NeedStatus.DONE_NOT_REACHABLE,
    NeedStatus.TAKING_CARE,
    NeedStatus.QUO,
)


def allowed_transitions(match: Match) -> list[str]:
    """The statuses the match may move to now, in the order the expert's page offers them."""
    return list(TRANSITIONS.get(match.status, ()))


def derive_need_status(match_statuses: Iterable[str]) -> str:
    """The need's status for these match statuses (pure, so the rule is tested on its own)."""
    present = set(match_statuses)
    for status in NEED_STATUS_ORDER:
        if status in present:
            return status
    return MatchStatus.NOT_FOR_ME


def recompute_need_status(need: Need) -> str:
    """Store and return the need's status, read from its matches in the database.

    The statuses are queried rather than taken from ``need.matches``, which may hold a stale
    copy of a match another expert changed since it was loaded; pending changes of this
    session are flushed first by autoflush.
    """
    statuses = db.session.scalars(select(Match.status).where(Match.need_id == need.id)).all()
    status = derive_need_status(statuses)
    if need.status != status:
        need.status = status
    return status


def _label(status: str) -> str:
    return MATCH_STATUS_LABELS.get(status, status)


def _lock(match: Match) -> Need:
    """Lock the need, then the match (always in this order, so two changes cannot deadlock),
    and reload both so the checks below read what is committed now, not what a page showed."""
    need = db.session.scalars(
        select(Need).where(Need.id == match.need_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    db.session.scalars(
        select(Match).where(Match.id == match.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    return need


def change_match_status(match: Match, new_status: str) -> Match:
    """Move ``match`` to ``new_status`` if the table allows it, stamp its dates, recompute the
    need's status. Asking for the current status again (a double click, a form re-posted)
    changes nothing and is not an error.

    Raises :class:`ServiceError` (French) for an unknown status or a transition the table
    refuses; the caller's transaction then rolls back, releasing the locks.
    """
    if new_status not in MATCH_STATUSES:
        raise ServiceError(f"Statut inconnu : « {new_status} ».")
    need = _lock(match)
    current = match.status
    if new_status == current:
        return match
    if new_status not in TRANSITIONS.get(current, ()):
        raise ServiceError(f"Impossible de passer du statut « {_label(current)} » au statut « {_label(new_status)} ».")

    need_was_taken_care = need.status in TAKEN_CARE_STATUSES
    now = utcnow()
    match.status = new_status
    if new_status == MatchStatus.QUO:
        match.taken_care_at = None
        match.closed_at = None
    else:
        if new_status in TAKEN_CARE_STATUSES and match.taken_care_at is None:
            match.taken_care_at = now
        if new_status in CLOSED_STATUSES:
            match.closed_at = now
        else:
            match.closed_at = None
    need_status = recompute_need_status(need)
    if need_status in TAKEN_CARE_STATUSES and not need_was_taken_care:
        _notify_taken_care(need, match)
    if new_status == MatchStatus.DONE_NOT_REACHABLE:
        _notify_not_reachable(need, match)
    db.session.flush()
    return match


# ---------------------------------------------------------------- the business's emails

# Experts' phones are free text (« 04 72 00 00 00 poste 12 », « standard : … »): only what looks
# like a bare number is reformatted, anything else is shown as typed.
_BARE_PHONE = re.compile(r"\+?[\d\s.()/-]{6,}")


def expert_phone(value: str | None) -> str:
    """An expert's phone as the business should read it: French format when it is a bare
    number, otherwise the expert's own words, untouched."""
    text = " ".join((value or "").split())
    if _BARE_PHONE.fullmatch(text):
        return display_phone(text)
    return text


def _business_context(need: Need, match: Match) -> dict:
    """What both business emails say: who asked what, and which expert answers."""
    expert = match.expert
    contact = need.contact
    return {
        "subject": need.subject.label,
        "contact_name": contact.full_name,
        "contact_email": contact.email,
        "contact_phone": display_phone(contact.phone),
        "company_name": need.facility.company.name,
        "expert_name": expert.full_name,
        "antenne": expert.antenne.name,
        "institution": expert.antenne.institution.name,
    }


def _notify_taken_care(need: Need, match: Match) -> None:
    """C2, once per need: the outbox key ignores a later taking care of this need."""
    queue_email(
        f"need:{need.id}:taken_care",
        to=need.contact.email,
        template="company_taken_care",
        context=_business_context(need, match),
    )


def _notify_not_reachable(need: Need, match: Match) -> None:
    """C3, once per match: the business gets the means to call this expert back."""
    expert = match.expert
    queue_email(
        f"match:{match.id}:not_reachable",
        to=need.contact.email,
        template="company_not_reachable",
        context={
            **_business_context(need, match),
            "expert_phone": expert_phone(expert.phone),
            "expert_email": expert.email,
        },
        reply_to=expert.email or None,
    )
