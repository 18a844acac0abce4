"""The test kit's data: a factory_boy factory for every model a test writes, and the builders
of the shapes tests need often (a need with its matches, a request as the form sends it, an
expert covering a territory). Reference data (territories, catalog) is loaded once, not built.

Factories commit, like the fixtures they replace: what a test builds is there for the pages
and jobs it then drives, whatever session they use.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy import select
from stdnum import luhn

from app.extensions import db
from app.models import (
    AddressbookUpload,
    Antenne,
    AuditEvent,
    Comment,
    Company,
    Contact,
    Expert,
    ExpertSubject,
    Export,
    Facility,
    InboundMessage,
    Institution,
    InstitutionSubject,
    Match,
    Need,
    NeedStar,
    OutboundEmail,
    Solicitation,
    StaffNote,
    Subject,
    Theme,
    User,
    Zone,
)
from app.models.base import utcnow
from app.models.requests import MatchStatus
from app.services.requests.dispatch import route_solicitation
from app.services.requests.exports import EXPORT_LIFETIME
from app.services.requests.matches import recompute_need_status
from app.services.requests.solicitations import SolicitationInput
from app.services.statistics.aggregates import refresh as refresh_statistics
from app.services.transactions import transaction

LYON = "69123"
_serial = itertools.count(1)


def valid_siret(n: int) -> str:
    """A SIRET with a valid Luhn key, distinct for each ``n``."""
    base = f"{n:013d}"
    return base + luhn.calc_check_digit(base)


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class ThemeFactory(_Base):
    class Meta:
        model = Theme

    slug = factory.Sequence(lambda n: f"theme-{n}")
    label = factory.Sequence(lambda n: f"Thème {n}")


class SubjectFactory(_Base):
    class Meta:
        model = Subject

    theme = factory.SubFactory(ThemeFactory)
    slug = factory.Sequence(lambda n: f"sujet-{n}")
    label = factory.Sequence(lambda n: f"Sujet {n}")


class InstitutionFactory(_Base):
    class Meta:
        model = Institution

    name = factory.Sequence(lambda n: f"Institution {n}")
    slug = factory.Sequence(lambda n: f"institution-{n}")


class AntenneFactory(_Base):
    class Meta:
        model = Antenne

    institution = factory.SubFactory(InstitutionFactory)
    name = factory.Sequence(lambda n: f"Antenne {n}")


class ExpertFactory(_Base):
    class Meta:
        model = Expert

    antenne = factory.SubFactory(AntenneFactory)
    full_name = factory.Sequence(lambda n: f"Expert {n}")
    email = factory.Sequence(lambda n: f"expert{n}@partenaire.example")


class UserFactory(_Base):
    """An account without a password (log in through ``services.accounts`` when a test needs to)."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"agent{n}@place.example")
    full_name = factory.Sequence(lambda n: f"Agent {n}")
    role = "admin"


class CompanyFactory(_Base):
    class Meta:
        model = Company

    siren = factory.Sequence(lambda n: f"8{n:08d}")
    name = factory.Sequence(lambda n: f"Entreprise {n}")


class FacilityFactory(_Base):
    class Meta:
        model = Facility

    company = factory.SubFactory(CompanyFactory)
    siret = factory.LazyAttributeSequence(lambda o, n: f"{o.company.siren}{n % 100000:05d}")
    commune_code = LYON


class ContactFactory(_Base):
    class Meta:
        model = Contact

    company = factory.SubFactory(CompanyFactory)
    full_name = "Julie Durand"
    email = factory.Sequence(lambda n: f"contact{n}@entreprise.example")
    phone = "06 12 34 56 78"


class SolicitationFactory(_Base):
    """A request as the form stores it, waiting for staff unless told otherwise."""

    class Meta:
        model = Solicitation

    subject = factory.LazyFunction(lambda: subject("recrutement"))
    full_name = "Alix Durand"
    email = factory.Sequence(lambda n: f"demandeur{n}@entreprise.example")
    phone = "+33472000000"
    siret = factory.Sequence(lambda n: valid_siret(500_000 + n))
    postal_code = "69001"
    insee_code = LYON
    description = "Nous cherchons à recruter deux apprentis boulangers."


class NeedFactory(_Base):
    """A need without matches (``make_need`` adds them and derives the status)."""

    class Meta:
        model = Need

    subject = factory.LazyFunction(lambda: subject("recrutement"))
    facility = factory.SubFactory(FacilityFactory)
    contact = factory.SubFactory(ContactFactory, company=factory.SelfAttribute("..facility.company"))
    description = "Nous cherchons un apprenti boulanger."


class MatchFactory(_Base):
    class Meta:
        model = Match

    need = factory.SubFactory(NeedFactory)
    expert = factory.SubFactory(ExpertFactory)
    status = MatchStatus.QUO


class CommentFactory(_Base):
    class Meta:
        model = Comment

    need = factory.SubFactory(NeedFactory)
    expert = factory.SubFactory(ExpertFactory)
    body = "Je rappelle l'entreprise demain."


class StaffNoteFactory(_Base):
    class Meta:
        model = StaffNote

    need = factory.SubFactory(NeedFactory)
    user = factory.SubFactory(UserFactory)
    body = "Entreprise déjà connue."


class NeedStarFactory(_Base):
    class Meta:
        model = NeedStar

    need = factory.SubFactory(NeedFactory)
    user = factory.SubFactory(UserFactory)


class OutboundEmailFactory(_Base):
    class Meta:
        model = OutboundEmail

    key = factory.Sequence(lambda n: f"test:{n}")
    recipient = factory.Sequence(lambda n: f"destinataire{n}@entreprise.example")
    subject = "Votre demande a bien été reçue"
    body_text = "Bonjour"


class InboundMessageFactory(_Base):
    class Meta:
        model = InboundMessage

    sender = "expert@partenaire.example"
    subject = "Re: Nouvelle demande"
    text = "Bien reçu."


class ExportFactory(_Base):
    """An export waiting for its job (``state`` and ``content`` say otherwise when needed)."""

    class Meta:
        model = Export

    user = factory.SubFactory(UserFactory)
    kind = "needs"
    format = "csv"
    params = factory.LazyFunction(dict)
    rows_done = 0
    created_at = factory.LazyFunction(utcnow)
    expires_at = factory.LazyAttribute(lambda o: o.created_at + EXPORT_LIFETIME)


class AddressbookUploadFactory(_Base):
    class Meta:
        model = AddressbookUpload

    token = factory.Sequence(lambda n: f"{n:032x}")
    user = factory.SubFactory(UserFactory)
    filename = "annuaire.csv"
    content = b"institution,antenne\n"


class AuditEventFactory(_Base):
    class Meta:
        model = AuditEvent

    actor = "Système"
    action = "update"
    object_type = "Need"
    object_id = 1


# ---------------------------------------------------------------- shapes tests need often


def subject(slug: str) -> Subject:
    return db.session.scalar(select(Subject).where(Subject.slug == slug))


def offer(expert: Expert, subject_slug: str) -> ExpertSubject:
    """Make ``expert`` take ``subject_slug`` through its institution's offer (created if missing)."""
    institution = expert.antenne.institution
    found = subject(subject_slug)
    inst_subject = db.session.scalar(
        select(InstitutionSubject).where(
            InstitutionSubject.institution_id == institution.id, InstitutionSubject.subject_id == found.id
        )
    ) or InstitutionSubject(institution=institution, subject=found)
    link = ExpertSubject(expert=expert, institution_subject=inst_subject)
    db.session.add(link)
    db.session.commit()
    return link


def zone(owner: Antenne | Expert, reference: str) -> None:
    """Add ``national`` or one ``kind:code`` to an antenne's or an expert's zone."""
    if reference == "national":
        owner.national = True
    else:
        kind, code = reference.split(":")
        owner.zones.append(Zone(kind=kind, code=code))
    db.session.commit()


def covering_expert(reference: str, subject_slug: str = "recrutement", institution=None, **fields) -> Expert:
    """An expert of a new antenne whose zone is ``reference``, offering ``subject_slug``."""
    antenne = AntenneFactory(institution=institution or InstitutionFactory())
    zone(antenne, reference)
    expert = ExpertFactory(antenne=antenne, **fields)
    offer(expert, subject_slug)
    return expert


def solicitation_input(**overrides) -> SolicitationInput:
    """What the public form sends for a recruitment need in Lyon, ``overrides`` aside."""
    values = {
        "subject_slug": "recrutement",
        "full_name": "Camille Martin",
        "email": "camille@boulangerie.example",
        "phone": "04 72 00 00 00",
        "siret": valid_siret(1234),
        "postal_code": "69001",
        "insee_code": LYON,
        "description": "Nous cherchons à recruter deux apprentis boulangers pour la rentrée.",
        "mtm_campaign": "printemps",
    }
    return SolicitationInput(**(values | overrides))


def make_need(
    expert_count: int = 2,
    *,
    statuses: tuple[str, ...] = (),
    experts: list[Expert] | None = None,
    company: str = "Boulangerie Durand",
    siret: str | None = None,
    subject_slug: str = "recrutement",
    commune: str = LYON,
    contact: str = "Julie Durand",
    email: str = "julie@durand.example",
    phone: str = "06 12 34 56 78",
    description: str = "Nous cherchons un apprenti boulanger.\nNous n'avons jamais embauché.",
    status: str | None = None,
    created_at: datetime | None = None,
    taken_care_at: datetime | None = None,
) -> Need:
    """A need with one match per expert (``experts``, then new ones up to ``expert_count`` or
    ``len(statuses)``), ``statuses`` giving the first matches' status. Its status is derived
    from the matches, as the service does, unless ``status`` says otherwise. The first need of
    a test has SIRET 12345678900017; the next ones get their own company."""
    if siret is None:
        taken = db.session.scalar(select(Company.id).where(Company.siren == "123456789")) is not None
        siret = f"9{next(_serial):08d}00017" if taken else "12345678900017"
    firm = Company(siren=siret[:9], name=company)
    need = Need(
        subject=subject(subject_slug),
        facility=Facility(company=firm, siret=siret, commune_code=commune),
        contact=Contact(company=firm, full_name=contact, email=email, phone=phone),
        description=description,
    )
    if created_at is not None:
        need.created_at = created_at
    experts = list(experts or ())
    for index in range(max(expert_count, len(statuses), len(experts))):
        match_status = statuses[index] if index < len(statuses) else MatchStatus.QUO
        match = Match(
            expert=experts[index] if index < len(experts) else ExpertFactory(),
            status=match_status,
            zone="departement:69",
            zone_owner="antenne",
        )
        if created_at is not None:
            match.created_at = created_at
        if match_status == MatchStatus.TAKING_CARE and taken_care_at is not None:
            match.taken_care_at = taken_care_at
        need.matches.append(match)
    db.session.add(need)
    db.session.flush()
    if status is None:
        recompute_need_status(need)
    else:
        need.status = status
    db.session.commit()
    return need


def add_match(
    expert: Expert, status: str = MatchStatus.QUO, *, days_ago: float = 1, company: str | None = None
) -> Match:
    """One more need for ``expert`` (an export project), from its own company, received ``days_ago`` days ago."""
    return make_need(
        0,
        experts=[expert],
        statuses=(status,),
        company=company or f"Entreprise {next(_serial)}",
        subject_slug="export",
        description="Exporter au Québec.",
        created_at=utcnow() - timedelta(days=days_ago),
    ).matches[0]


VILLEURBANNE = ("69266", "69100")


def make_solicitation(*, full_name: str = "Alix Durand", status: str = "in_progress", **fields) -> Solicitation:
    """A request from Villeurbanne held for review, as the desk lists it; ``fields`` override
    any column (``subject_slug`` names the subject)."""
    n = next(_serial)
    if "subject_slug" in fields:
        fields["subject"] = subject(fields.pop("subject_slug"))
    values = {
        "email": f"alix{n}@boulangerie.example",
        "phone": "0472000000",
        "siret": f"{n:09d}00012",
        "postal_code": VILLEURBANNE[1],
        "insee_code": VILLEURBANNE[0],
        "company_name": f"Boulangerie n°{n} du centre",
        "qualification_notes": ["Mode revue : toute demande attend l'équipe."],
        "mtm_campaign": "printemps-2026",
    }
    return SolicitationFactory(status=status, full_name=full_name, **(values | fields))


def make_routed(count: int) -> list[Need]:
    """``count`` requests sent to the experts through the service, as staff would."""
    with transaction():
        return [route_solicitation(make_solicitation(full_name="Claude Bernard")) for _ in range(count)]


def make_helped_need(days_ago: float = 10, **fields) -> Need:
    """A need whose first match closed as « Aide proposée » ``days_ago`` days ago."""
    need = make_need(2, statuses=(MatchStatus.DONE, MatchStatus.NOT_FOR_ME), **fields)
    need.matches[0].closed_at = utcnow() - timedelta(days=days_ago)
    db.session.commit()
    return need


def make_stats_world() -> None:
    """Hand-counted: in March 2026 (Paris), Lyon: 3 needs — one helped (taken in charge after 2
    days), one closed without help (after 7 days), one waiting; Rennes: 1 need helped. A need of
    1 April 00:30 Paris (31 March 22:30 UTC) is April's. Requests: 3 in March at Lyon, 2 sent."""
    march = datetime(2026, 3, 10, 9, tzinfo=UTC)
    helped = make_need(1, statuses=(MatchStatus.DONE,), created_at=march, commune=LYON)
    no_help = make_need(1, statuses=(MatchStatus.DONE_NO_HELP,), created_at=march, commune=LYON)
    make_need(1, created_at=march, commune=LYON)
    rennes = make_need(1, statuses=(MatchStatus.DONE,), created_at=march, commune="35238")
    april = make_need(
        1, statuses=(MatchStatus.DONE,), created_at=datetime(2026, 3, 31, 22, 30, tzinfo=UTC), commune=LYON
    )
    for need, waited in ((helped, 2), (no_help, 7), (rennes, 1), (april, 1)):
        match = need.matches[0]
        match.taken_care_at = match.created_at + timedelta(days=waited)
        match.closed_at = match.created_at + timedelta(days=waited + 1)
    for status in ("processed", "processed", "in_progress"):
        solicitation = make_solicitation(status=status)
        solicitation.created_at = march
    db.session.commit()
    with transaction():
        refresh_statistics()


def make_landing(
    slug: str = "portail",
    subjects: tuple[str, ...] = ("recrutement", "formation"),
    *,
    origins: tuple[str, ...] = ("https://partenaire.example",),
    institution=None,
    partner_name: str | None = None,
    titles: dict[str, str] | None = None,
):
    """A partner (of ``institution``, if given) and its landing offering ``subjects``."""
    from app.models import Landing, LandingSubject, Partner

    partner = Partner(name=partner_name or f"Partenaire {slug}", institution=institution, origins=list(origins))
    landing = Landing(partner=partner, slug=slug, title=f"Les aides de {partner.name}")
    for position, subject_slug in enumerate(subjects):
        landing.subjects.append(
            LandingSubject(subject=subject(subject_slug), position=position, title=(titles or {}).get(subject_slug))
        )
    db.session.add(landing)
    db.session.commit()
    return landing
