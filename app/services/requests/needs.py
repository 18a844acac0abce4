"""What staff do to a need once it is with the experts: add an expert, hand a match over to
another expert, follow the need, send one of its emails again.

Every verb takes the acting staff member, checks the rule, writes its changes and their
emails together (the outbox rows commit with the change, in the caller's transaction).
The audit trail names that person whatever the interface (``acting_as``), so a CLI or a job
calling these verbs later is attributed the same way as the back office.

Reassigning (:func:`reassign_match`) is modelled as « a new match for the new expert, the
old match removed », not as a change of the old match's expert, nor as a closing of it:

- The need's status is derived from its matches and has no status meaning « handed
  over »; the statuses are a CHECK constraint. Closing the old match as ``not_for_me`` would
  record a refusal the expert never made (it would count in their institution's refusals, and
  a need whose new expert declines would read « refused by all » for the wrong reason);
  leaving it ``quo`` or ``taking_care`` would keep the need « taken care of » by nobody.
  Removing it takes it out of the derived status exactly.
- A new row gives the new expert what every expert has: a match dated the day they received
  it (their inbox files a ``quo`` match by its date: a reused row created weeks ago would land
  in « expirées » at once), its own outbox keys (``match:<id>:new``, and later
  ``match:<id>:not_reachable``, which are « once per match ever »), its own signed link.
- The old expert's signed link and reply address name the old match, which no longer exists:
  ``links.match_for_token`` and the inbound parser refuse them with their usual French
  message (« cette mise en relation ne vous est plus attribuée »). Their comments stay on the
  thread (comments belong to the need), so nothing they wrote is lost.
- What is lost with the row (its status, dates) is in the audit trail: the match's own events
  (creation, status changes, deletion, all with their actor), plus one event written here on
  the need, ``reassigned_match`` and ``reassigned_expert`` (old → new ids), which is how the
  need's timeline (``services.timeline``) finds the removed match and its emails again.
"""

from __future__ import annotations

from flask_babel import format_date
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import MATCH_STATUS_LABELS, AuditEvent, Expert, Match, Need, NeedStar, OutboundEmail, User
from app.models.audit import REASSIGNED_EXPERT, REASSIGNED_MATCH
from app.models.base import utcnow
from app.models.requests import MatchStatus, SolicitationStatus
from app.services.accounts.users import require_staff
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.expert_emails import need_context, queue_new_match_email
from app.services.messaging.outbox import queue_email, resend_email
from app.services.requests.matches import recompute_need_status
from app.services.requests.timeline import need_email_ids

# A match still waiting for, or being handled by, its expert: the only ones worth handing over
# (a closed one is history; a refused one is already out of the need's status).
REASSIGNABLE_STATUSES = (MatchStatus.QUO, MatchStatus.TAKING_CARE)


def _lock_need(need: Need) -> Need:
    """Lock the need and reload it, so two staff members (or an expert answering meanwhile) are
    serialised, in the same order as ``services.matches`` locks (need first, then match)."""
    return db.session.scalars(
        select(Need).where(Need.id == need.id).with_for_update().execution_options(populate_existing=True)
    ).one()


def _check_need_open(need: Need) -> None:
    solicitation = need.solicitation
    if solicitation is not None and solicitation.status == SolicitationStatus.CANCELED:
        raise ServiceError(
            f"La demande #{solicitation.id} a été abandonnée : on ne peut plus envoyer son besoin à un expert."
        )


def _check_active(expert: Expert | None) -> Expert:
    if expert is None:
        raise ServiceError("Expert introuvable.")
    if expert.deleted_at is not None:
        raise ServiceError("Cet expert a été supprimé de l'annuaire : il ne peut plus recevoir de besoin.")
    antenne = expert.antenne
    if antenne.deleted_at is not None or antenne.institution.deleted_at is not None:
        raise ServiceError(
            f"L'antenne ou l'institution de {expert.full_name} a été supprimée : cet expert ne peut plus recevoir "
            "de besoin."
        )
    return expert


def _check_not_on_need(need: Need, expert: Expert) -> None:
    already = db.session.scalar(select(Match.id).where(Match.need_id == need.id, Match.expert_id == expert.id))
    if already is not None:
        raise _already(expert)


def _other_count(need: Need, *, besides: int) -> int:
    """How many other experts received the need: the email tells the newcomer they are not alone."""
    return db.session.scalar(select(func.count(Match.id)).where(Match.need_id == need.id, Match.id != besides)) or 0


def _already(expert: Expert) -> ServiceError:
    return ServiceError(f"{expert.full_name} a déjà reçu ce besoin.")


# ---------------------------------------------------------------- add an expert


def add_expert_to_need(need: Need, expert: Expert, *, user: User) -> Match:
    """Send the need to one more expert of staff's choosing, whatever the routing rule says
    (the business asked for something the address book does not route, an expert was
    forgotten…). The match has no zone entry: that is how lists show « ajouté par
    l'équipe ». The expert gets the usual new-need email with their signed link, in the same
    transaction.

    Refused (French, nothing written) for someone who is not staff, a deleted expert (or one of
    a deleted antenne or institution), an expert already on the need, or a need whose request
    was abandoned.
    """
    require_staff(user, "ajouter un expert à un besoin")
    try:
        # A savepoint: the UNIQUE (need, expert) is the last guard when another staff member
        # added the same expert at the same moment (the need's row lock normally serialises them).
        with acting_as(actor_label(user), user.id), db.session.begin_nested():
            need = _lock_need(need)
            _check_need_open(need)
            _check_active(expert)
            _check_not_on_need(need, expert)
            match = Match(need_id=need.id, expert_id=expert.id, status=MatchStatus.QUO, zone=None, zone_owner=None)
            db.session.add(match)
            db.session.flush()
            queue_new_match_email(match, other_count=_other_count(need, besides=match.id))
            recompute_need_status(need)
    except IntegrityError:
        raise _already(expert) from None
    return match


# ---------------------------------------------------------------- reassign a match


def reassign_match(match: Match, new_expert: Expert, *, user: User) -> Match:
    """Hand ``match``'s need over from its expert to ``new_expert``; returns the new
    match. See the module's docstring for why it is a new match and the old one removed.

    The old expert is told politely that the need is now someone else's (no link to act: theirs
    no longer works), the new expert receives the usual new-need email. Only a match still
    waiting (``quo``) or taken in charge (``taking_care``) may be handed over, to an active
    expert who is not already on the need; otherwise a French refusal and nothing changes.
    """
    require_staff(user, "réattribuer une mise en relation")
    try:
        with acting_as(actor_label(user), user.id), db.session.begin_nested():
            need = _lock_need(match.need)
            current = db.session.scalars(
                select(Match).where(Match.id == match.id).with_for_update().execution_options(populate_existing=True)
            ).one_or_none()
            if current is None or current.need_id != need.id:
                raise ServiceError("Cette mise en relation n'existe plus : la page était peut-être ancienne.")
            match = current
            if match.status not in REASSIGNABLE_STATUSES:
                raise ServiceError(
                    f"Seule une mise en relation en attente ou prise en charge peut être réattribuée "
                    f"(celle-ci est « {MATCH_STATUS_LABELS.get(match.status, match.status)} »)."
                )
            _check_need_open(need)
            _check_active(new_expert)
            if new_expert.id == match.expert_id:
                raise ServiceError(f"{new_expert.full_name} a déjà cette mise en relation.")
            _check_not_on_need(need, new_expert)

            old_expert = match.expert
            old_id, old_status = match.id, match.status
            _notify_reassigned(match, old_expert, new_expert)

            new_match = Match(
                need_id=need.id, expert_id=new_expert.id, status=MatchStatus.QUO, zone=None, zone_owner=None
            )
            db.session.add(new_match)
            db.session.delete(match)
            db.session.flush()
            db.session.add(
                AuditEvent(
                    created_at=utcnow(),
                    user_id=user.id,
                    actor=actor_label(user)[:200],
                    action="update",
                    object_type="Need",
                    object_id=need.id,
                    changes={
                        REASSIGNED_MATCH: [old_id, new_match.id],
                        REASSIGNED_EXPERT: [old_expert.id, new_expert.id],
                        "reassigned_status": [old_status, MatchStatus.QUO],
                    },
                )
            )
            queue_new_match_email(new_match, other_count=_other_count(need, besides=new_match.id))
            recompute_need_status(need)
    except IntegrityError:
        raise _already(new_expert) from None
    return new_match


def _notify_reassigned(match: Match, old_expert: Expert, new_expert: Expert) -> None:
    """The old expert learns the need left them, so they stop working on it; a deleted expert
    (address blanked) has nobody left to tell."""
    if old_expert.deleted_at is not None or not old_expert.email:
        return
    queue_email(
        f"match:{match.id}:reassigned",
        to=old_expert.email,
        template="match_reassigned",
        context={
            **need_context(match),
            "expert_name": old_expert.full_name,
            "was_taking_care": match.status == MatchStatus.TAKING_CARE,
            "received_on": format_date(match.created_at, "d MMMM y") if match.created_at else "",
            "new_expert_name": new_expert.full_name,
            "new_institution": new_expert.antenne.institution.name,
            "new_expert_email": new_expert.email,
        },
    )


# ---------------------------------------------------------------- follow a need


def star_need(need: Need, user: User) -> None:
    """Follow the need (« Suivre ce besoin »); following it twice is not an error."""
    require_staff(user, "suivre un besoin")
    exists = db.session.scalar(select(NeedStar.id).where(NeedStar.need_id == need.id, NeedStar.user_id == user.id))
    if exists is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(NeedStar(need_id=need.id, user_id=user.id))
    except IntegrityError:
        pass  # a double click raced us: the star is there, which is what was asked


def unstar_need(need: Need, user: User) -> None:
    """Stop following the need; not following it already is not an error."""
    require_staff(user, "suivre un besoin")
    db.session.execute(delete(NeedStar).where(NeedStar.need_id == need.id, NeedStar.user_id == user.id))


def is_starred(need: Need, user: User) -> bool:
    return (
        db.session.scalar(select(NeedStar.id).where(NeedStar.need_id == need.id, NeedStar.user_id == user.id))
        is not None
    )


# ---------------------------------------------------------------- resend one of its emails


def resend_need_email(need: Need, email_id: int, *, user: User) -> OutboundEmail:
    """« Renvoyer » from the need's page: only an email of this need's timeline (one sent for
    the need, its matches, its request or its thread), so a page cannot be made to resend
    another record's email (``outbox.resend_email``)."""
    require_staff(user, "renvoyer un courriel")
    if email_id not in need_email_ids(need):
        raise ServiceError("Ce courriel ne concerne pas ce besoin.")
    email = db.session.get(OutboundEmail, email_id)
    with acting_as(actor_label(user), user.id):
        return resend_email(email)
