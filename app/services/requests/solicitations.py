"""From the public form to the experts: submit, qualify, route, cancel (issue 3).

A submission is stored as a Solicitation (``in_progress``) and confirmed to the business by
email. With ``ROUTING_MODE=auto`` a clean request is routed at once — Company, Facility,
Contact, Need, one Match per expert of the rule (contract §4), one email per match — in the
*same* transaction as the submission: the request, its need, its matches and every email
exist together or not at all, so a crash never leaves a confirmed request without experts
nor an expert email pointing at nothing. Anything doubtful stays ``in_progress`` with its
reasons (French, in ``qualification_notes``) until staff route or cancel it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.dates import paris_text
from app.extensions import db
from app.models import (
    CommunePostalCode,
    Company,
    Contact,
    Facility,
    Match,
    Need,
    Solicitation,
    Subject,
    User,
)
from app.models.base import utcnow
from app.services.addressbook.routing import RoutedExpert, find_experts
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.expert_emails import queue_new_match_email
from app.services.messaging.outbox import queue_email
from app.services.reference.registry import CompanyInfo, get_registry

log = logging.getLogger(__name__)

# A second request on the same subject from the same SIRET or email within this window, while
# the first is still open, is most likely the same need typed twice: staff decide.
DUPLICATE_WINDOW = timedelta(days=30)
OPEN_NEED_STATUSES = ("quo", "taking_care")
# Catch-all subjects ("autre demande") are never routed automatically (contract §4).
CATCH_ALL_SUBJECT_SLUGS = frozenset({"autre", "autre-demande", "other"})
SPAM_REASON = "spam"
# Why staff drop a request: each of the first three tells the business why, with its own email
# (emails/solicitation_canceled_<reason>.*); spam tells nobody and blocks the address.
CANCEL_REASONS = {
    "out_of_scope": "Hors du champ du service",
    "not_a_company": "Pas une entreprise",
    "incomplete": "Demande incomplète",
    SPAM_REASON: "Spam",
}
EMAILED_REASONS = frozenset({"out_of_scope", "not_a_company", "incomplete"})
CANCEL_NOTE_PREFIX = "Abandonnée : "
REVIEW_MODE_NOTE = "Mode revue : toute demande attend l'équipe."
# What the business is promised in its confirmation (public_emails §2.1 C1).
CALLBACK_PROMISE = "sous 5 jours ouvrés"

_SIRET = re.compile(r"^\d{14}$")


@dataclass
class SolicitationInput:
    """What the public form validated; the service checks its invariants again."""

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


# ---------------------------------------------------------------- submit


def submit_solicitation(data: SolicitationInput) -> Solicitation:
    """Store a request, confirm it to the business and, in auto mode, route it — one commit.

    The registry is asked for the company's name but never blocks: an unknown SIRET or a
    registry that is down still gives a stored, confirmed request.
    """
    subject = _submitted_subject(data.subject_slug)
    siret = re.sub(r"\s+", "", data.siret or "")
    if not _SIRET.match(siret):
        raise ServiceError("Le numéro SIRET doit comporter 14 chiffres.")
    postal_code = (data.postal_code or "").strip()
    insee_code = _checked_commune(postal_code, (data.insee_code or "").strip().upper())
    full_name, email, phone = (data.full_name or "").strip(), (data.email or "").strip(), (data.phone or "").strip()
    description = (data.description or "").strip()
    if not (full_name and email and phone and description):
        raise ServiceError("Nom, adresse électronique, téléphone et description sont obligatoires.")
    info = _lookup(siret)

    solicitation = Solicitation(
        subject=subject,
        status="in_progress",
        full_name=full_name,
        email=email,
        phone=phone,
        siret=siret,
        postal_code=postal_code,
        insee_code=insee_code,
        description=description,
        company_name=info.name if info else None,
        registry_data=dataclasses.asdict(info) if info else None,
        qualification_notes=[],
        mtm_campaign=_short(data.mtm_campaign),
        mtm_kwd=_short(data.mtm_kwd),
        mtm_source=_short(data.mtm_source),
    )
    try:
        db.session.add(solicitation)
        db.session.flush()
        issues, experts = _qualify(solicitation)
        _queue_confirmation(solicitation, _institution_names(experts))
        if current_app.config.get("ROUTING_MODE", "auto") != "auto":
            solicitation.qualification_notes = [REVIEW_MODE_NOTE, *issues]
        elif issues:
            solicitation.qualification_notes = issues
        else:
            _route(solicitation, experts)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return solicitation


def _submitted_subject(slug: str) -> Subject:
    subject = db.session.scalar(select(Subject).where(Subject.slug == (slug or "").strip()))
    if subject is None:
        raise ServiceError(f"Sujet inconnu : « {slug} » n'est pas dans le catalogue.")
    if subject.is_archived:
        raise ServiceError(f"Le sujet « {subject.label} » n'est plus proposé.")
    return subject


def _checked_commune(postal_code: str, insee_code: str) -> str:
    """The INSEE code, checked against the postal code; deduced when the postal code serves
    one commune only (contract §5 lets the form leave it empty then)."""
    codes = list(
        db.session.scalars(select(CommunePostalCode.commune_code).where(CommunePostalCode.postal_code == postal_code))
    )
    if not codes:
        raise ServiceError(f"Le code postal « {postal_code} » n'existe pas.")
    if not insee_code:
        if len(codes) == 1:
            return codes[0]
        raise ServiceError("Choisissez la commune parmi celles de ce code postal.")
    if insee_code not in codes:
        raise ServiceError(f"La commune choisie (code INSEE {insee_code}) n'a pas le code postal « {postal_code} ».")
    return insee_code


def _lookup(siret: str) -> CompanyInfo | None:
    """The registry's answer, or None: a failing registry must never lose a request."""
    try:
        return get_registry().lookup(siret)
    except Exception:
        log.warning("registre des entreprises indisponible pour le SIRET %s", siret, exc_info=True)
        return None


def _short(value: str | None, limit: int = 200) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None


# ---------------------------------------------------------------- qualify


def qualification_issues(solicitation: Solicitation) -> list[str]:
    """Why this request should not go to experts without a human look; empty when clean."""
    return _qualify(solicitation)[0]


def _qualify(solicitation: Solicitation) -> tuple[list[str], list[RoutedExpert]]:
    """The reasons, and the experts found (routing reuses them instead of asking twice)."""
    issues: list[str] = []
    blocked = _blocked_reason(solicitation.email)
    if blocked:
        issues.append(blocked)
    duplicate = _open_duplicate(solicitation)
    if duplicate is not None:
        via = "du même SIRET" if duplicate.siret == solicitation.siret else "de la même adresse électronique"
        issues.append(
            f"Doublon : la demande #{duplicate.id} {via} sur le même sujet est encore en cours "
            f"(déposée le {duplicate.created_at:%d/%m/%Y})."
        )
    subject = solicitation.subject
    experts: list[RoutedExpert] = []
    if subject is None or subject.is_archived:
        issues.append("Sujet non aiguillable : ce sujet est archivé.")
    elif subject.slug in CATCH_ALL_SUBJECT_SLUGS:
        issues.append("Sujet non aiguillable : une demande « autre » est qualifiée par l'équipe.")
    else:
        experts = find_experts(subject.id, solicitation.insee_code)
        if not experts:
            issues.append("Aucun expert trouvé pour ce sujet sur cette commune.")
    return issues, experts


def _blocked_reason(email: str) -> str | None:
    address = (email or "").strip().lower()
    domain = address.rpartition("@")[2]
    for entry in current_app.config.get("BLOCKED_EMAIL_DOMAINS") or ():
        entry = entry.strip().lower()
        if entry and (address == entry or domain == entry or domain.endswith("." + entry)):
            return f"Adresse bloquée : « {entry} » est dans la liste des adresses bloquées (BLOCKED_EMAIL_DOMAINS)."
    earlier_notes = db.session.scalars(
        select(Solicitation.qualification_notes).where(
            func.lower(Solicitation.email) == address, Solicitation.status == "canceled"
        )
    )
    spam_note = (CANCEL_NOTE_PREFIX + SPAM_REASON).casefold()
    if any(str(note).casefold() == spam_note for notes in earlier_notes for note in notes or ()):
        return "Adresse bloquée : une demande précédente de cette adresse a été abandonnée comme spam."
    return None


def _open_duplicate(solicitation: Solicitation) -> Solicitation | None:
    """An earlier request still open — waiting for staff, or sent and not yet answered —
    on the same subject from the same SIRET or email."""
    since = utcnow() - DUPLICATE_WINDOW
    still_open = or_(
        Solicitation.status == "in_progress",
        and_(Solicitation.status == "processed", Need.status.in_(OPEN_NEED_STATUSES)),
    )
    return db.session.scalar(
        select(Solicitation)
        .outerjoin(Need, Need.solicitation_id == Solicitation.id)
        .where(
            Solicitation.id < solicitation.id,
            Solicitation.subject_id == solicitation.subject_id,
            Solicitation.created_at >= since,
            or_(Solicitation.siret == solicitation.siret, func.lower(Solicitation.email) == solicitation.email.lower()),
            still_open,
        )
        .order_by(Solicitation.id.desc())
        .limit(1)
    )


# ---------------------------------------------------------------- route


def route_solicitation(solicitation: Solicitation, *, by_user_id: int | None = None) -> Need:
    """Staff send a request that waited to the experts of the rule; commits.

    Refused, with a French message, when it was already sent or canceled, or when no expert
    covers its subject at its commune (staff then fix the address book or cancel it).
    """
    try:
        if by_user_id is not None:
            user = db.session.get(User, by_user_id)
            with acting_as(actor_label(user, by_user_id), by_user_id):
                need = _route(solicitation)
                db.session.flush()  # the status change is the staff member's too
        else:
            need = _route(solicitation)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return need


@dataclass(frozen=True)
class Assignment:
    """One expert who is to receive a need, and why: the zone entry of the routing rule, or
    ``zone``/``zone_owner`` None when staff added the expert by hand (« ajouté par l'équipe »)."""

    expert_id: int
    zone: str | None = None
    zone_owner: str | None = None

    @classmethod
    def routed(cls, found: RoutedExpert) -> Assignment:
        return cls(found.expert_id, found.zone, found.zone_owner)


def lock_for_sending(solicitation: Solicitation) -> None:
    """Lock the request's row (PostgreSQL) and refuse one already sent or canceled.

    Two staff members clicking together, or automatic routing racing a staff member, wait for
    one another here; the second one reads the status the first one committed and is refused.
    (A request may have several needs, so no UNIQUE constraint can be the last guard.)
    """
    status = db.session.scalar(select(Solicitation.status).where(Solicitation.id == solicitation.id).with_for_update())
    if status == "processed" or solicitation.needs:
        raise ServiceError(f"La demande #{solicitation.id} a déjà été transmise aux experts.")
    if status == "canceled":
        raise ServiceError(f"La demande #{solicitation.id} a été abandonnée : elle ne peut plus être transmise.")


def _route(solicitation: Solicitation, experts: list[RoutedExpert] | None = None) -> Need:
    """Send the request to the experts of the rule, without committing, so
    ``submit_solicitation`` routes within its own transaction."""
    lock_for_sending(solicitation)
    subject = solicitation.subject
    if subject is None or subject.is_archived:
        raise ServiceError(
            f"Le sujet « {subject.label if subject else '?'} » est archivé : la demande ne peut être transmise."
        )
    if experts is None:
        experts = find_experts(subject.id, solicitation.insee_code)
    if not experts:
        raise ServiceError(
            f"Aucun expert ne couvre le sujet « {subject.label} » sur la commune {solicitation.insee_code} : "
            "complétez l'annuaire ou abandonnez la demande."
        )
    return dispatch(solicitation, [(subject, [Assignment.routed(found) for found in experts])])[0]


def dispatch(solicitation: Solicitation, plan: list[tuple[Subject, list[Assignment]]]) -> list[Need]:
    """Turn a request into its needs and matches and queue their emails, without committing.

    The one path of every sending — automatic routing and staff sending (``services.qualification``)
    alike: the company, facility and contact, one need per subject, one match per expert, one
    email per match, the business's confirmation (already queued at submission; its key keeps it
    single), and the request marked sent. The caller has checked the plan and locked the row
    (``lock_for_sending``).
    """
    info = _registry_info(solicitation)
    company = _company(solicitation, info)
    facility = _facility(company, solicitation, info)
    contact = _contact(company, solicitation)
    created: list[tuple[Need, list[Match]]] = []
    for subject, assignments in plan:
        need = Need(
            solicitation=solicitation,
            subject=subject,
            facility=facility,
            contact=contact,
            description=solicitation.description,
            status="quo",
        )
        db.session.add(need)
        matches = [
            Match(need=need, expert_id=a.expert_id, status="quo", zone=a.zone, zone_owner=a.zone_owner)
            for a in assignments
        ]
        db.session.add_all(matches)
        created.append((need, matches))
    db.session.flush()

    institutions: set[str] = set()
    for _need, matches in created:
        for match in matches:
            queue_new_match_email(match, other_count=len(matches) - 1)
            institutions.add(match.expert.antenne.institution.name)
    _queue_confirmation(solicitation, sorted(institutions, key=str.casefold))
    solicitation.status = "processed"
    solicitation.processed_at = utcnow()
    return [need for need, _matches in created]


def _registry_info(solicitation: Solicitation) -> CompanyInfo | None:
    """What the registry said at submission; asked again when it had not answered."""
    data = solicitation.registry_data
    if data:
        try:
            return CompanyInfo(**data)
        except TypeError:
            pass
    info = _lookup(solicitation.siret)
    if info is not None:
        solicitation.company_name = info.name
        solicitation.registry_data = dataclasses.asdict(info)
    return info


def _insert_ignoring_conflict(model, key: str, values: dict) -> None:
    """INSERT … ON CONFLICT DO NOTHING: two requests from a new company arriving together
    must not fail one another on the UNIQUE SIREN/SIRET."""
    dialect = db.session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    now = utcnow()
    stmt = module.insert(model).values(created_at=now, updated_at=now, **values)
    db.session.execute(stmt.on_conflict_do_nothing(index_elements=[key]))


def _company(solicitation: Solicitation, info: CompanyInfo | None) -> Company:
    siren = solicitation.siret[:9]
    name = (info.name if info else None) or solicitation.company_name or f"Entreprise {siren}"
    company = db.session.scalar(select(Company).where(Company.siren == siren))
    if company is None:
        _insert_ignoring_conflict(
            Company, "siren", {"siren": siren, "name": name[:300], "legal_form": info.legal_form if info else None}
        )
        company = db.session.scalar(select(Company).where(Company.siren == siren))
    elif info is not None and company.name != info.name:
        company.name = info.name[:300]
        company.legal_form = info.legal_form or company.legal_form
    return company


def _facility(company: Company, solicitation: Solicitation, info: CompanyInfo | None) -> Facility:
    naf = info.naf_code if info else None
    facility = db.session.scalar(select(Facility).where(Facility.siret == solicitation.siret))
    if facility is None:
        _insert_ignoring_conflict(
            Facility,
            "siret",
            {
                "siret": solicitation.siret,
                "company_id": company.id,
                "commune_code": solicitation.insee_code,
                "naf_code": naf,
            },
        )
        facility = db.session.scalar(select(Facility).where(Facility.siret == solicitation.siret))
    else:
        # The business just told us where it is: that is the commune experts are chosen for.
        facility.commune_code = solicitation.insee_code
        facility.naf_code = naf or facility.naf_code
    return facility


def _contact(company: Company, solicitation: Solicitation) -> Contact:
    """The same person asking again is one contact, with their latest name and phone."""
    contact = db.session.scalar(
        select(Contact)
        .where(Contact.company_id == company.id, func.lower(Contact.email) == solicitation.email.lower())
        .order_by(Contact.id)
        .limit(1)
    )
    if contact is None:
        contact = Contact(company=company, full_name=solicitation.full_name, email=solicitation.email)
        db.session.add(contact)
    contact.full_name = solicitation.full_name
    contact.phone = solicitation.phone
    return contact


# ---------------------------------------------------------------- confirm, cancel


def _institution_names(experts: list[RoutedExpert]) -> list[str]:
    return sorted({found.institution for found in experts}, key=str.casefold)


def _queue_confirmation(solicitation: Solicitation, institutions: list[str]) -> None:
    """The business's « Confirmation de votre demande », once per request (its key)."""
    queue_email(
        f"solicitation:{solicitation.id}:confirmation",
        to=solicitation.email,
        template="solicitation_confirmation",
        context={
            "subject": solicitation.subject.label,
            "full_name": solicitation.full_name,
            "description": solicitation.description,
            "institutions": institutions,
            "callback_promise": CALLBACK_PROMISE,
        },
    )


def cancel_solicitation(
    solicitation: Solicitation,
    *,
    reason: str | None = None,
    notify: bool | None = None,
    user: User | None = None,
) -> None:
    """Staff drop a request; commits.

    ``reason`` is one of ``CANCEL_REASONS`` (« Hors du champ du service »…) or free text; it is
    kept in the request's notes. A reason with its own email (``EMAILED_REASONS``) tells the
    business why and what to do instead, unless ``notify=False``; ``notify`` defaults to that
    choice made by the reason. A reason of « spam » sends nothing and blocks later requests
    from the same address (``_blocked_reason`` reads the note).
    """
    raw = (reason or "").strip()
    code = raw.casefold() if raw.casefold() in CANCEL_REASONS else None
    if notify is None:
        notify = code in EMAILED_REASONS
    if notify and code not in EMAILED_REASONS:
        raise ServiceError("Aucun email n'est prévu pour ce motif : choisissez un motif avec email ou n'envoyez rien.")
    try:
        if user is not None:
            with acting_as(actor_label(user), user.id):
                _cancel(solicitation, raw, code, notify)
                db.session.flush()
        else:
            _cancel(solicitation, raw, code, notify)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def _cancel(solicitation: Solicitation, raw: str, code: str | None, notify: bool) -> None:
    # The same lock as sending: a request is either sent or canceled, never both.
    status = db.session.scalar(select(Solicitation.status).where(Solicitation.id == solicitation.id).with_for_update())
    if status == "canceled":
        raise ServiceError(f"La demande #{solicitation.id} est déjà abandonnée.")
    if status == "processed":
        raise ServiceError(
            f"La demande #{solicitation.id} a déjà été transmise aux experts : elle ne peut être abandonnée."
        )
    if code == SPAM_REASON:
        note = CANCEL_NOTE_PREFIX + SPAM_REASON
    elif code is not None:
        note = CANCEL_NOTE_PREFIX + CANCEL_REASONS[code]
    else:
        note = CANCEL_NOTE_PREFIX + (raw or "sans motif")
    solicitation.status = "canceled"
    solicitation.canceled_at = utcnow()
    solicitation.qualification_notes = [*(solicitation.qualification_notes or []), note]
    if notify and code is not None:
        _queue_cancellation_email(solicitation, code)


def _queue_cancellation_email(solicitation: Solicitation, code: str) -> None:
    """The business learns why its request goes no further, and where to turn instead."""
    subject = solicitation.subject
    queue_email(
        f"solicitation:{solicitation.id}:canceled",
        to=solicitation.email,
        template=f"solicitation_canceled_{code}",
        context={
            "full_name": solicitation.full_name,
            "subject": subject.label if subject else "",
            "subject_slug": subject.slug if subject and not subject.is_archived else None,
            "description": solicitation.description,
            "company_name": solicitation.company_name,
            "submitted_on": paris_text(solicitation.created_at, "%d/%m/%Y"),
        },
    )
