"""The business's satisfaction survey: one answer per need, given through a signed link."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Expert, Facility, Match, Need, SatisfactionAnswer, User
from app.models.base import utcnow
from app.models.desk import SATISFACTION_OUTCOMES
from app.models.requests import MatchStatus
from app.services.accounts.users import require_staff
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.links import LinkError, need_id_for_survey_token

MAX_COMMENT_LENGTH = 2000


def need_for_survey(token: str) -> Need:
    need = db.session.get(Need, need_id_for_survey_token(token))
    if need is None:
        raise LinkError("Ce lien n'est plus actif : cette demande n'existe plus.")
    return need


def answer_of(need: Need) -> SatisfactionAnswer | None:
    return db.session.scalar(select(SatisfactionAnswer).where(SatisfactionAnswer.need_id == need.id))


def record_answer(
    need: Need,
    *,
    contacted: bool | None,
    useful: bool | None = None,
    outcomes: list[str] | None = None,
    comment: str | None = None,
) -> SatisfactionAnswer:
    """Store the answer of ``need``'s business; answering again updates it (never a second row)."""
    outcomes = list(dict.fromkeys(outcomes or []))
    unknown = [value for value in outcomes if value not in SATISFACTION_OUTCOMES]
    if unknown:
        raise ServiceError("Réponse inconnue : choisissez parmi les propositions.")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > MAX_COMMENT_LENGTH:
        raise ServiceError(f"Le commentaire ne doit pas dépasser {MAX_COMMENT_LENGTH} caractères.")
    answer = db.session.scalar(
        select(SatisfactionAnswer).where(SatisfactionAnswer.need_id == need.id).with_for_update()
    ) or SatisfactionAnswer(need_id=need.id)
    answer.contacted = contacted
    answer.useful = useful
    answer.outcomes = outcomes
    answer.comment = comment
    db.session.add(answer)
    db.session.flush()
    return answer


def answer_summary(answer: SatisfactionAnswer) -> str:
    """The answer on one line, as staff, referents and experts read it."""
    yes_no = {True: "oui", False: "non", None: "sans réponse"}
    parts = [f"rappelé(e) : {yes_no[answer.contacted]}", f"utile : {yes_no[answer.useful]}"]
    if answer.outcomes:
        parts.append("a permis : " + ", ".join(SATISFACTION_OUTCOMES.get(o, o).lower() for o in answer.outcomes))
    if answer.comment:
        parts.append(f"commentaire : {answer.comment}")
    return " ; ".join(parts)


def share_answer(need: Need, *, user: User) -> SatisfactionAnswer:
    """Staff share the business's answer (its comment included: the form says so) with the
    experts who closed the need and their referents."""
    require_staff(user, "partager l'avis d'une entreprise")
    answer = answer_of(need)
    if answer is None:
        raise ServiceError("L'entreprise n'a pas encore répondu à l'enquête : rien à partager.")
    if answer.shared_at is None:
        with acting_as(actor_label(user), user.id):
            answer.shared_at = utcnow()
            db.session.flush()
    return answer


def closed_with_help_by(expert_ids) -> object:
    """The answer's need was closed with help (« Aide proposée ») by one of these experts: whom
    a shared answer is shared with."""
    return exists().where(
        Match.need_id == SatisfactionAnswer.need_id, Match.status == MatchStatus.DONE, Match.expert_id.in_(expert_ids)
    )


def answers_for_expert(expert: Expert, limit: int = 20) -> list[SatisfactionAnswer]:
    """What the businesses said of the needs this expert closed with help, once staff shared it."""
    return list(
        db.session.scalars(
            select(SatisfactionAnswer)
            .where(SatisfactionAnswer.shared_at.is_not(None), closed_with_help_by([expert.id]))
            .options(
                selectinload(SatisfactionAnswer.need).selectinload(Need.subject),
                selectinload(SatisfactionAnswer.need).selectinload(Need.facility).selectinload(Facility.company),
            )
            .order_by(SatisfactionAnswer.shared_at.desc(), SatisfactionAnswer.id.desc())
            .limit(limit)
        )
    )
