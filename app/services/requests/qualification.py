"""The request desk's qualification work: what staff do with a request held for
review (« À qualifier ») until it goes to experts or is dropped.

- ``correct_subject``: the business picked the wrong subject (or « autre »); staff set the
  right one, and the reasons it was held are worked out again for it.
- ``suggestions``: for each subject staff consider, the experts the routing rule would choose
  at the request's commune, with the zone entry that made each pass — the page shows them as
  ticked boxes.
- ``send_solicitation``: staff send the request, possibly split into several needs (one per
  subject), to the experts they kept ticked plus any expert they added by hand. It shares the
  one sending path with automatic routing (``dispatch.dispatch``): same needs, matches,
  emails and confirmation, in one transaction, on a locked row.

Cancelling (with a templated email to the business) is ``cancellation.cancel_solicitation``;
internal notes are ``services.notes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Antenne, Expert, Need, Solicitation, Subject, User
from app.models.requests import SolicitationStatus
from app.services.accounts.users import require_staff
from app.services.addressbook import routing
from app.services.addressbook.absences import absence_text
from app.services.addressbook.expert_lookup import Scope, parse_id, search_experts
from app.services.addressbook.routing_filters import facts_of_request
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.requests.dispatch import Assignment, dispatch, lock_for_sending
from app.services.requests.solicitations import REVIEW_MODE_NOTE, qualification_issues

# How many experts the « ajouter un expert » autocomplete offers at once.
EXPERT_CHOICES_LIMIT = 20


def _require_staff(user: User | None) -> None:
    require_staff(user, "qualifier une demande")


def _subject(value: Subject | int | str | None) -> Subject:
    """A subject given as a row or an id (a form field), or a French refusal."""
    if isinstance(value, Subject):
        return value
    if value is None or str(value).strip() == "":
        raise ServiceError("Choisissez un sujet dans la liste.")
    ident = parse_id(value)
    if ident is None:
        raise ServiceError("Choisissez un sujet dans la liste.")
    found = db.session.get(Subject, ident)
    if found is None:
        raise ServiceError(f"Sujet inconnu (#{ident}).")
    return found


def _still_to_qualify(solicitation: Solicitation) -> None:
    if solicitation.status == SolicitationStatus.PROCESSED:
        raise ServiceError(f"La demande #{solicitation.id} a déjà été transmise aux experts.")
    if solicitation.status == SolicitationStatus.CANCELED:
        raise ServiceError(f"La demande #{solicitation.id} a été abandonnée.")


# ---------------------------------------------------------------- correct the subject


def correct_subject(solicitation: Solicitation, subject: Subject | int | str, *, user: User) -> Solicitation:
    """Staff set the subject the request is really about.

    The reasons it was held are worked out again for the new subject (a « sujet non
    aiguillable » or « aucun expert trouvé » note about the old one would mislead); the review
    mode note stays. The audit trail keeps the old subject and notes, under the staff member.
    """
    _require_staff(user)
    _still_to_qualify(solicitation)
    chosen = _subject(subject)
    if not chosen.is_offered:
        raise ServiceError(f"Le sujet « {chosen.label} » est archivé : choisissez un sujet proposé.")
    if chosen.id == solicitation.subject_id:
        raise ServiceError(f"La demande porte déjà sur le sujet « {chosen.label} ».")
    with acting_as(actor_label(user), user.id):
        # The row is locked so a correction cannot slip under a send in progress.
        lock_for_sending(solicitation)
        kept = [note for note in solicitation.qualification_notes or [] if note == REVIEW_MODE_NOTE]
        solicitation.subject = chosen
        solicitation.subject_id = chosen.id
        with db.session.no_autoflush:  # one audit event for the subject and its notes
            issues = qualification_issues(solicitation)
        solicitation.qualification_notes = [*kept, *issues]
        db.session.flush()
    db.session.flush()
    return solicitation


# ---------------------------------------------------------------- suggestions


@dataclass
class Suggestion:
    """One subject under consideration and the experts the rule would choose for it."""

    subject: Subject
    explanation: routing.RoutingExplanation | None = None
    # « Absent jusqu'au … » by expert id, for those with a current or coming absence.
    absences: dict[int, str] = field(default_factory=dict)

    @property
    def experts(self) -> list[routing.RoutedExpert]:
        return self.explanation.matches if self.explanation else []

    @property
    def excluded(self) -> list[routing.RoutedExpert]:
        """Found by the zone rule, refused by a filter: staff see who and why."""
        return self.explanation.excluded if self.explanation else []

    @property
    def expert_ids(self) -> list[int]:
        return [found.expert_id for found in self.experts]


def suggestions(solicitation: Solicitation, subject_ids: Iterable[int | str | Subject]) -> list[Suggestion]:
    """For each chosen subject (duplicates dropped, order kept), the experts routing would
    choose at the request's commune, each with the zone entry that made it pass (own zone or
    antenne's, narrowest first), and their announced absences."""
    chosen: list[Subject] = []
    for value in subject_ids:
        found = _subject(value)
        if not found.is_offered:
            raise ServiceError(f"Le sujet « {found.label} » est archivé : aucune demande ne lui est aiguillée.")
        if found not in chosen:
            chosen.append(found)
    result = [Suggestion(subject=found, explanation=_explain(found, solicitation)) for found in chosen]
    ids = {expert_id for suggestion in result for expert_id in suggestion.expert_ids}
    if ids:
        absent = {
            expert.id: text
            for expert in db.session.scalars(
                select(Expert).where(
                    Expert.id.in_(ids), or_(Expert.absent_from.is_not(None), Expert.absent_until.is_not(None))
                )
            )
            if (text := absence_text(expert))
        }
        for suggestion in result:
            suggestion.absences = {i: absent[i] for i in suggestion.expert_ids if i in absent}
    return result


def _answers(solicitation: Solicitation, subject: Subject) -> dict | None:
    """The request's answers count for the subject it was asked on; another subject staff
    chose has not asked them (its institutions' expectations are then « non évaluées »)."""
    return solicitation.subject_answers if subject.id == solicitation.subject_id else None


def _explain(subject: Subject, solicitation: Solicitation) -> routing.RoutingExplanation:
    return routing.explain(
        subject.slug, solicitation.insee_code, facts_of_request(solicitation), _answers(solicitation, subject)
    )


# ---------------------------------------------------------------- experts staff add by hand


def expert_label(expert: Expert) -> str:
    """What the autocomplete shows and posts back: name, email, antenne, institution, id."""
    return f"{expert.full_name} <{expert.email}> — {expert.antenne.name} — {expert.antenne.institution.name} (#{expert.id})"


def expert_choices(query: str, *, scope: Scope | None = None, limit: int = EXPERT_CHOICES_LIMIT) -> list[dict]:
    """The « ajouter un expert » autocomplete: ``[{"id", "text"}]`` (see ``expert_lookup``);
    a picked label ends with ``(#id)``, so it names exactly one expert."""
    return [
        {"id": expert.id, "text": expert_label(expert)} for expert in search_experts(query, scope=scope, limit=limit)
    ]


# ---------------------------------------------------------------- send


def send_solicitation(
    solicitation: Solicitation, plan: Sequence[tuple[Subject | int | str, Iterable[int | str]]], *, user: User
) -> list[Need]:
    """Staff send the request to the experts they chose, one need per subject.

    ``plan`` lists ``(subject, expert ids)``: the ids are the suggested experts staff kept
    ticked plus any they added, even outside the routing rule. A suggested expert's match keeps
    the zone entry that chose it; an added one is recorded as « ajouté par l'équipe » (no zone).
    Everything — needs, matches, expert emails, the business's confirmation, the status —
    happens in one transaction on the locked row, so two clicks send once. Refused in French:
    a request already sent or canceled, no subject, a subject twice or archived, a subject with
    no expert ticked, an unknown or deleted expert.
    """
    _require_staff(user)
    with acting_as(actor_label(user), user.id):
        lock_for_sending(solicitation)
        records: dict[int, list[dict]] = {}
        checked = _checked_plan(solicitation, plan, records)
        needs = dispatch(solicitation, checked, records)
        db.session.flush()  # the request's new status is recorded under the staff member too
    db.session.flush()
    return needs


def _checked_plan(
    solicitation: Solicitation,
    plan: Sequence[tuple[Subject | int | str, Iterable[int | str]]],
    records: dict[int, list[dict]],
) -> list[tuple[Subject, list[Assignment]]]:
    """The plan checked, its experts labelled with the zone entry that chose them; ``records``
    receives, by subject, what the filters decided (kept on each need)."""
    if not plan:
        raise ServiceError("Choisissez au moins un sujet avant d'envoyer la demande.")
    subjects: list[Subject] = []
    wanted: list[list[int]] = []
    for subject_value, expert_values in plan:
        subject = _subject(subject_value)
        if not subject.is_offered:
            raise ServiceError(f"Le sujet « {subject.label} » est archivé : la demande ne peut lui être envoyée.")
        if subject in subjects:
            raise ServiceError(f"Le sujet « {subject.label} » est choisi deux fois : un besoin par sujet.")
        parsed = [parse_id(value) for value in expert_values]
        if None in parsed:
            raise ServiceError(f"Sujet « {subject.label} » : un expert choisi n'est pas reconnu.")
        ids = list(dict.fromkeys(parsed))
        if not ids:
            raise ServiceError(
                f"Aucun expert coché pour le sujet « {subject.label} » : cochez ou ajoutez au moins un expert, "
                "ou retirez ce sujet."
            )
        subjects.append(subject)
        wanted.append(ids)

    all_ids = {i for ids in wanted for i in ids}
    experts = {
        expert.id: expert
        for expert in db.session.scalars(
            select(Expert)
            .where(Expert.id.in_(all_ids))
            .options(selectinload(Expert.antenne).selectinload(Antenne.institution))
        )
    }
    for ident in sorted(all_ids):
        expert = experts.get(ident)
        if expert is None:
            raise ServiceError(f"L'expert #{ident} n'existe pas.")
        if expert.is_deleted or expert.antenne.is_deleted or expert.antenne.institution.is_deleted:
            name = expert.full_name if not expert.is_deleted else f"#{expert.id}"
            raise ServiceError(
                f"L'expert « {name} » a été supprimé de l'annuaire : il ne peut pas recevoir la demande."
            )

    checked: list[tuple[Subject, list[Assignment]]] = []
    for subject, ids in zip(subjects, wanted, strict=True):
        kept, excluded = routing.route_company(
            subject.id, solicitation.insee_code, facts_of_request(solicitation), _answers(solicitation, subject)
        )
        routed = {found.expert_id: found for found in kept}
        records[subject.id] = routing.checks_record(kept, excluded)
        checked.append(
            (subject, [Assignment.routed(routed[i]) if i in routed else Assignment(expert_id=i) for i in ids])
        )
    return checked
