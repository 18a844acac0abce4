"""From the public form to the experts: a request submitted, checked by the form's own rules,
confirmed, and either sent at once or held for staff with its reasons.

A submission is stored as a Solicitation (``in_progress``) and confirmed to the business by
email. With ``ROUTING_MODE=auto`` a clean request is sent at once (``dispatch``) in the *same*
transaction as the submission. Anything doubtful stays ``in_progress`` with its reasons
(French, in ``qualification_notes``) until staff send it (``qualification``) or cancel it
(``cancellation``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Solicitation, Subject
from app.models.partners import CHANNELS
from app.models.requests import SolicitationStatus
from app.services.addressbook.routing import RoutedExpert, route_company, unevaluated_reasons, unroutable_reason
from app.services.addressbook.routing_filters import facts_of_request
from app.services.errors import ServiceError
from app.services.partners.landings import clean_origin_url
from app.services.reference.questions import clean_answers, questions_of
from app.services.reference.registry import lookup_company
from app.services.requests.cancellation import address_canceled_as_spam
from app.services.requests.dispatch import Assignment, dispatch, institution_names, queue_confirmation, route
from app.services.requests.duplicates import DUPLICATE_LABEL, open_duplicate
from app.services.requests.validation import FIELDS, clean_solicitation, clean_tracking

REVIEW_MODE_NOTE = "Mode revue : toute demande attend l'équipe."
# How an answer's error is named among the fields' errors (``question:<key>``).
ANSWER_PREFIX = "question:"


@dataclass
class SolicitationInput:
    """What an interface received; ``submit_solicitation`` checks it with the form's rules."""

    subject_slug: str
    full_name: str
    email: str
    phone: str
    siret: str
    postal_code: str
    insee_code: str
    description: str
    mtm_campaign: str | None = None
    mtm_kwd: str | None = None
    mtm_source: str | None = None
    # The one-time key of the form's copy (``public.forms.submission_key``): stored once.
    submission_key: str | None = None
    # Answers to the subject's questions (``SubjectQuestion.key`` → the answer), all required.
    answers: dict[str, str] | None = None
    # Where it came from (issue 16): ``models.partners.CHANNELS``, the landing, the API key, the
    # page that embedded the form, and the person who filed it for the business.
    channel: str = "site"
    landing_id: int | None = None
    api_key_id: int | None = None
    origin_url: str | None = None
    filed_by_id: int | None = None
    # Experts chosen directly by whoever filed it (already checked against their scope):
    # the request goes to them, not to the routing rule's.
    expert_ids: list[int] | None = None


class InvalidSolicitation(ServiceError):
    """What the form's rules refuse: ``errors`` maps each field to its French message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        ordered = [name for name in FIELDS if name in errors] + [name for name in errors if name not in FIELDS]
        super().__init__(" ".join(errors[name] for name in ordered))


# ---------------------------------------------------------------- submit


def already_submitted(submission_key: str | None) -> Solicitation | None:
    """The request stored from the form's copy ``submission_key``, if any."""
    if not submission_key:
        return None
    return db.session.scalar(select(Solicitation).where(Solicitation.submission_key == submission_key))


def submit_solicitation(data: SolicitationInput) -> Solicitation:
    """Store a request, confirm it to the business and, in auto mode, send it, in the caller's transaction.

    The values are checked by the very rules the public form shows next to its fields
    (``validation.clean_solicitation``), so a request from any interface is stored in the same
    normal form or refused with the same French messages. The registry is asked for the
    company's name but never blocks: an unknown SIRET or a registry that is down still gives a
    stored, confirmed request.
    """
    subject = _submitted_subject(data.subject_slug)
    cleaned = clean_solicitation({name: getattr(data, name) for name in FIELDS})
    answers, answer_errors = clean_answers(questions_of(subject.id), data.answers or {})
    if not cleaned.is_valid or answer_errors:
        raise InvalidSolicitation({**cleaned.errors, **{ANSWER_PREFIX + k: v for k, v in answer_errors.items()}})
    values = cleaned.values
    info = lookup_company(values["siret"])
    solicitation = Solicitation(
        subject=subject,
        status=SolicitationStatus.IN_PROGRESS,
        **values,
        company_name=info.name if info else None,
        registry_data=dataclasses.asdict(info) if info else None,
        qualification_notes=[],
        mtm_campaign=clean_tracking(data.mtm_campaign),
        mtm_kwd=clean_tracking(data.mtm_kwd),
        mtm_source=clean_tracking(data.mtm_source),
        submission_key=data.submission_key,
        subject_answers=answers or None,
        channel=data.channel if data.channel in CHANNELS else "site",
        landing_id=data.landing_id,
        api_key_id=data.api_key_id,
        origin_url=clean_origin_url(data.origin_url),
        filed_by_id=data.filed_by_id,
    )
    db.session.add(solicitation)
    # A second post of the same form (a double click, two tabs) stops here: the key is unique,
    # and a concurrent one waits for the first transaction, then fails, before any routing.
    db.session.flush()
    if data.expert_ids:
        # Sent at once to the experts chosen (the confirmation names their institutions).
        dispatch(solicitation, [(subject, [Assignment(expert_id) for expert_id in dict.fromkeys(data.expert_ids)])])
        db.session.flush()
        return solicitation
    issues, experts, excluded = _qualify(solicitation)
    queue_confirmation(solicitation, institution_names(experts))
    if current_app.config.get("ROUTING_MODE", "auto") != "auto":
        solicitation.qualification_notes = [REVIEW_MODE_NOTE, *issues]
    elif issues:
        solicitation.qualification_notes = issues
    else:
        route(solicitation, experts, excluded)
    db.session.flush()
    return solicitation


def _submitted_subject(slug: str) -> Subject:
    subject = db.session.scalar(select(Subject).where(Subject.slug == (slug or "").strip()))
    if subject is None:
        raise ServiceError(f"Sujet inconnu : « {slug} » n'est pas dans le catalogue.")
    if not subject.is_offered:
        raise ServiceError(f"Le sujet « {subject.label} » n'est plus proposé.")
    return subject


# ---------------------------------------------------------------- qualify


def qualification_issues(solicitation: Solicitation) -> list[str]:
    """Why this request should not go to experts without a human look; empty when clean."""
    return _qualify(solicitation)[0]


def _qualify(solicitation: Solicitation) -> tuple[list[str], list[RoutedExpert], list[RoutedExpert]]:
    """The reasons, and the experts found and excluded (routing reuses them instead of asking twice)."""
    issues: list[str] = []
    blocked = _blocked_reason(solicitation.email)
    if blocked:
        issues.append(blocked)
    duplicate = open_duplicate(solicitation)
    if duplicate is not None:
        via = "du même SIRET" if duplicate.siret == solicitation.siret else "de la même adresse électronique"
        issues.append(
            f"{DUPLICATE_LABEL} : la demande #{duplicate.id} {via} sur le même sujet est encore en cours "
            f"(déposée le {duplicate.created_at:%d/%m/%Y})."
        )
    experts: list[RoutedExpert] = []
    excluded: list[RoutedExpert] = []
    unroutable = unroutable_reason(solicitation.subject)
    if unroutable:
        issues.append(unroutable)
    else:
        experts, excluded = route_company(
            solicitation.subject.id,
            solicitation.insee_code,
            facts_of_request(solicitation),
            solicitation.subject_answers,
        )
        if not experts:
            issues.append("Aucun expert trouvé pour ce sujet sur cette commune.")
        # A filter that could not be evaluated keeps its experts, and a person decides (issue 14).
        issues += unevaluated_reasons(experts)
    return issues, experts, excluded


def _blocked_reason(email: str) -> str | None:
    address = (email or "").strip().lower()
    domain = address.rpartition("@")[2]
    for entry in current_app.config.get("BLOCKED_EMAIL_DOMAINS") or ():
        entry = entry.strip().lower()
        if entry and (address == entry or domain == entry or domain.endswith("." + entry)):
            return f"Adresse bloquée : « {entry} » est dans la liste des adresses bloquées (BLOCKED_EMAIL_DOMAINS)."
    if address_canceled_as_spam(address):
        return "Adresse bloquée : une demande précédente de cette adresse a été abandonnée comme spam."
    return None
