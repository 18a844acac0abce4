"""Sending a request to experts: its company, facility and contact, one need per subject, one
match per expert, one email per match, and the business's confirmation.

The one path of every sending: automatic routing at submission (``solicitations``) and staff
sending from the desk (``qualification``) alike. It runs inside the caller's transaction, so
the request, its needs, its matches and every email exist together or not at all: a crash never
leaves a confirmed request without experts nor an expert email pointing at nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.dates import paris_text
from app.extensions import db
from app.models import Company, Contact, Facility, Match, Need, Solicitation, Subject, User
from app.models.base import utcnow
from app.models.requests import MatchStatus, SolicitationStatus
from app.services.addressbook.routing import RoutedExpert, checks_record, route_company
from app.services.addressbook.routing_filters import facts_of_request
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.messaging.expert_emails import queue_new_match_email
from app.services.messaging.outbox import queue_email
from app.services.reference.registry import UNKNOWN_HEADCOUNT, CompanyInfo, lookup_company

# What the business is promised in its confirmation.
CALLBACK_PROMISE = "sous 5 jours ouvrés"


def route_solicitation(solicitation: Solicitation, *, by_user_id: int | None = None) -> Need:
    """Staff send a request that waited to the experts of the rule.

    Refused, with a French message, when it was already sent or canceled, or when no expert
    covers its subject at its commune (staff then fix the address book or cancel it).
    """
    if by_user_id is not None:
        user = db.session.get(User, by_user_id)
        with acting_as(actor_label(user, by_user_id), by_user_id):
            need = route(solicitation)
            db.session.flush()  # the status change is the staff member's too
    else:
        need = route(solicitation)
    db.session.flush()
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
    if status == SolicitationStatus.PROCESSED or solicitation.needs:
        raise ServiceError(f"La demande #{solicitation.id} a déjà été transmise aux experts.")
    if status == SolicitationStatus.CANCELED:
        raise ServiceError(f"La demande #{solicitation.id} a été abandonnée : elle ne peut plus être transmise.")


def route(
    solicitation: Solicitation,
    experts: list[RoutedExpert] | None = None,
    excluded: list[RoutedExpert] | None = None,
) -> Need:
    """Send the request to the experts of the rule, without committing, so
    ``submit_solicitation`` routes within its own transaction (with the experts it found, and
    those a filter excluded, which the need records)."""
    lock_for_sending(solicitation)
    subject = solicitation.subject
    if subject is None or not subject.is_offered:
        raise ServiceError(
            f"Le sujet « {subject.label if subject else '?'} » est archivé : la demande ne peut être transmise."
        )
    if experts is None:
        experts, excluded = route_company(
            subject.id, solicitation.insee_code, facts_of_request(solicitation), solicitation.subject_answers
        )
    if not experts:
        raise ServiceError(
            f"Aucun expert ne couvre le sujet « {subject.label} » sur la commune {solicitation.insee_code} : "
            "complétez l'annuaire ou abandonnez la demande."
        )
    plan = [(subject, [Assignment.routed(found) for found in experts])]
    return dispatch(solicitation, plan, {subject.id: checks_record(experts, excluded or [])})[0]


def dispatch(
    solicitation: Solicitation,
    plan: list[tuple[Subject, list[Assignment]]],
    routing_checks: dict[int, list[dict]] | None = None,
) -> list[Need]:
    """Turn a request into its needs and matches and queue their emails, without committing.

    The one path of every sending — automatic routing and staff sending (``services.qualification``)
    alike: the company, facility and contact, one need per subject, one match per expert, one
    email per match, the business's confirmation (already queued at submission; its key keeps it
    single), and the request marked sent. The caller has checked the plan and locked the row
    (``lock_for_sending``). ``routing_checks`` are, by subject, what filters decided
    (``routing.checks_record``), kept on each need.
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
            status=MatchStatus.QUO,
            routing_checks=(routing_checks or {}).get(subject.id) or None,
        )
        db.session.add(need)
        matches = [
            Match(need=need, expert_id=a.expert_id, status=MatchStatus.QUO, zone=a.zone, zone_owner=a.zone_owner)
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
    queue_confirmation(solicitation, sorted(institutions, key=str.casefold))
    solicitation.status = SolicitationStatus.PROCESSED
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
    info = lookup_company(solicitation.siret)
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


def _facts(info: CompanyInfo | None) -> dict:
    """The registry's facts a facility keeps (routing filters and people read them)."""
    if info is None:
        return {}
    created = None
    if info.created_on:
        try:
            created = date.fromisoformat(info.created_on[:10])
        except ValueError:
            created = None
    return {
        "naf_code": info.naf_code,
        "headcount_code": (info.headcount_code or UNKNOWN_HEADCOUNT)[:2],
        "created_on": created,
        "activity_nature": (info.activity_nature or None) and info.activity_nature[:30],
    }


def _facility(company: Company, solicitation: Solicitation, info: CompanyInfo | None) -> Facility:
    facts = _facts(info)
    facility = db.session.scalar(select(Facility).where(Facility.siret == solicitation.siret))
    if facility is None:
        _insert_ignoring_conflict(
            Facility,
            "siret",
            {
                "siret": solicitation.siret,
                "company_id": company.id,
                "commune_code": solicitation.insee_code,
                "naf_code": None,
                **facts,
            },
        )
        facility = db.session.scalar(select(Facility).where(Facility.siret == solicitation.siret))
    else:
        # The business just told us where it is: that is the commune experts are chosen for.
        facility.commune_code = solicitation.insee_code
        # The registry's latest word on what it is (a fact it no longer gives is kept).
        for name, value in facts.items():
            if value is not None:
                setattr(facility, name, value)
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


# ---------------------------------------------------------------- the confirmation


def institution_names(experts: list[RoutedExpert]) -> list[str]:
    return sorted({found.institution for found in experts}, key=str.casefold)


def _filer(solicitation: Solicitation) -> str | None:
    """« Camille Martin (CCI France) »: who filed the request for the business, if someone did."""
    user = solicitation.filed_by
    if user is None:
        return None
    institution = getattr(user, "institution", None)
    name = user.full_name or user.email
    return f"{name} ({institution.name})" if institution is not None else f"{name} (équipe Place des Entreprises)"


def queue_confirmation(solicitation: Solicitation, institutions: list[str]) -> None:
    """The business's « Confirmation de votre demande », once per request (its key).

    The address was typed by whoever filled the form and is not verified yet: the email
    quotes nothing that person typed (no name, no description), only what the service says
    (the subject, a reference, the partners), so the form cannot relay a stranger's text from
    our domain to any address."""
    queue_email(
        f"solicitation:{solicitation.id}:confirmation",
        to=solicitation.email,
        template="solicitation_confirmation",
        context={
            "subject": solicitation.subject.label,
            "reference": solicitation.id,
            "sent_on": paris_text(solicitation.created_at or utcnow(), "%d/%m/%Y"),
            "institutions": institutions,
            "callback_promise": CALLBACK_PROMISE,
            # Issue 16: the partner whose site brought it, and who filed it for the business.
            "partner": solicitation.landing.partner.name if solicitation.landing else None,
            "filed_by": _filer(solicitation),
        },
    )
