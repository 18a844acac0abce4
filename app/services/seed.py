"""Demo data for ``make run``: the demo address book, a staff account, a partner referent and a few requests.

Everything goes through the real verbs (the import, the form's validation, submission and
routing, an expert's answer) so the demo shows what production would do; running the seed
twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Institution,
    InstitutionSubject,
    Landing,
    LandingSubject,
    OfferExpectation,
    Partner,
    Solicitation,
    Subject,
    SubjectQuestion,
    User,
)
from app.models.base import utcnow
from app.models.requests import MatchStatus
from app.services.accounts.users import create_user
from app.services.addressbook.filters import import_filters
from app.services.addressbook.importer import import_addressbook
from app.services.errors import ServiceError
from app.services.requests.matches import change_match_status
from app.services.requests.solicitations import SolicitationInput, submit_solicitation
from app.services.requests.validation import clean_solicitation
from app.services.statistics.aggregates import refresh as refresh_statistics

DEMO_STAFF_EMAIL = "support@demo.place-des-entreprises.fr"
DEMO_STAFF_PASSWORD = "demo-support-2026"  # noqa: S105 - printed by make run, development only
# A partner referent of one institution of the demo address book, to show what referents see.
DEMO_REFERENT_EMAIL = "referent@demo.place-des-entreprises.fr"
DEMO_REFERENT_PASSWORD = "demo-referent-2026"  # noqa: S105 - printed by make run, development only
DEMO_REFERENT_INSTITUTION = "CCI France"

# (subject, full name, email, phone, SIRET, postal code, INSEE code, description, expert answer)
DEMO_REQUESTS = [
    (
        "recrutement",
        "Amélie Chevalier",
        "amelie.chevalier@boulangerie-demo.example",
        "04 78 12 34 56",
        "85234567700011",
        "69002",
        "69123",
        "Boulangerie de 6 salariés, nous cherchons à recruter deux apprentis et un vendeur pour la rentrée. "
        "Quelles aides à l'embauche existent et qui peut nous aider à diffuser les offres ?",
        MatchStatus.DONE,
    ),
    (
        "tresorerie",
        "Loïc Le Floch",
        "loic.lefloch@menuiserie-demo.example",
        "02 99 45 67 89",
        "42134561200012",
        "35000",
        "35238",
        "Menuiserie de 12 salariés : deux gros clients paient avec trois mois de retard et nous avons des "
        "échéances URSSAF ce mois-ci. Nous cherchons une solution pour passer les deux prochains mois.",
        None,
    ),
    (
        "export",
        "Sofia Haddad",
        "sofia.haddad@cosmetiques-demo.example",
        "01 42 00 11 22",
        "30234568100019",
        "75011",
        "75056",
        "Fabricant de cosmétiques naturels (8 personnes), nous voulons vendre au Canada et en Belgique. "
        "Comment financer un premier salon et trouver des distributeurs ?",
        None,
    ),
    (
        "cybersecurite",
        "Yannick Morvan",
        "yannick.morvan@garage-demo.example",
        "02 98 11 22 33",
        "77234567400018",
        "29200",
        "29019",
        "Garage automobile, nous avons subi un rançongiciel le mois dernier. Nous voudrions sécuriser nos "
        "postes et notre logiciel de facturation, avec un accompagnement si possible financé.",
        None,
    ),
    # The same subject at the same commune from an artisan, a trader and a company whose nature
    # the registry does not give: the demo filters (data/demo_filters.csv) send the first to the
    # CMA only, the second to the CCI only, and hold the third for staff (« non évalué »).
    (
        "ceder-entreprise",
        "Bernard Rousseau",
        "bernard.rousseau@electricite-demo.example",
        "04 72 10 20 30",
        "51234561200018",
        "69003",
        "69123",
        "Artisan électricien depuis 30 ans, je souhaite céder mon entreprise (4 salariés) d'ici deux ans. "
        "Par où commencer pour l'évaluer et trouver un repreneur ?",
        None,
    ),
    (
        "ceder-entreprise",
        "Nadia Benali",
        "nadia.benali@epicerie-demo.example",
        "04 72 40 50 60",
        "61234561100018",
        "69007",
        "69123",
        "Je tiens une épicerie fine depuis 15 ans et je pars à la retraite : je cherche un repreneur pour "
        "le fonds de commerce et un accompagnement pour la transmission.",
        None,
    ),
    (
        "ceder-entreprise",
        "Julien Mercier",
        "julien.mercier@logiciel-demo.example",
        "04 72 70 80 90",
        "71234569300014",
        "69002",
        "69123",
        "Éditeur de logiciels (9 personnes), nous envisageons de céder la société à un groupe : quelles "
        "étapes, et quels accompagnements existent ?",
        None,
    ),
]
# Some demo requests are made older, so that the relances desk has a need in its baskets and the
# follow-up has something to send (``flask followup run``): the cash-flow request waits since
# 12 days (« Sans réponse »), the export one since 25 (« Risque d'abandon »), and the
# recruitment one was helped 11 days ago (its satisfaction survey is due).
DEMO_AGES = {"recrutement": 20, "tresorerie": 12, "export": 25}
DEMO_HELPED_DAYS_AGO = 11


@dataclass
class SeedReport:
    lines_: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.lines_


def demo_addressbook_path() -> Path:
    return Path(current_app.root_path).parent / "data" / "demo_addressbook.csv"


def demo_filters_path() -> Path:
    return Path(current_app.root_path).parent / "data" / "demo_filters.csv"


def seed_demo() -> SeedReport:
    """Import the demo address book and make sure the demo staff and referent accounts exist."""
    if current_app.config.get("ENV_NAME") == "production":
        raise ServiceError("Les données de démonstration ne se chargent pas en production.")
    report = SeedReport()
    imported = import_addressbook(demo_addressbook_path().read_bytes())
    if imported.errors:
        raise ServiceError("Annuaire de démonstration invalide :\n" + "\n".join(str(e) for e in imported.errors))
    report.lines_.append("Annuaire de démonstration :")
    report.lines_.extend(f"  {line}" for line in imported.lines())
    filters = import_filters(demo_filters_path().read_bytes())
    if filters.errors:
        raise ServiceError("Filtres de démonstration invalides :\n" + "\n".join(filters.errors))
    report.lines_.append("Filtres de mise en relation de démonstration :")
    report.lines_.extend(f"  {line}" for line in filters.lines())
    report.lines_.extend(_seed_questions())
    report.lines_.extend(_seed_requests())
    if not db.session.scalar(select(func.count()).select_from(User).where(User.email == DEMO_STAFF_EMAIL)):
        create_user(DEMO_STAFF_EMAIL, role="admin", password=DEMO_STAFF_PASSWORD, full_name="Équipe support (démo)")
        report.lines_.append(f"Compte support de démonstration créé : {DEMO_STAFF_EMAIL}")
    else:
        report.lines_.append(f"Compte support de démonstration déjà présent : {DEMO_STAFF_EMAIL}")
    report.lines_.append(_seed_referent())
    report.lines_.extend(_seed_partner())
    report.lines_.extend(_seed_history())
    report.lines_.extend(f"Statistiques publiques : {line}" for line in refresh_statistics().lines())
    return report


def _seed_referent() -> str:
    if db.session.scalar(select(func.count()).select_from(User).where(User.email == DEMO_REFERENT_EMAIL)):
        return f"Compte référent de démonstration déjà présent : {DEMO_REFERENT_EMAIL}"
    institution = db.session.scalar(select(Institution).where(Institution.name == DEMO_REFERENT_INSTITUTION))
    if institution is None:
        raise ServiceError(f"Institution de démonstration absente : {DEMO_REFERENT_INSTITUTION}.")
    create_user(
        DEMO_REFERENT_EMAIL,
        role="referent",
        password=DEMO_REFERENT_PASSWORD,
        full_name="Référente CCI (démo)",
        institution_slug=institution.slug,
    )
    return f"Compte référent de démonstration créé : {DEMO_REFERENT_EMAIL} ({DEMO_REFERENT_INSTITUTION})"


# Eight months of past requests, so that /stats has a history to show (issue 15): (subject,
# postal code, INSEE code) where the demo address book has experts, and what the experts did.
DEMO_HISTORY_PLACES = (
    ("recrutement", "69003", "69123"),
    ("tresorerie", "35000", "35238"),
    ("export", "75011", "75056"),
    ("formation", "69007", "69123"),
    ("dettes-fiscales-sociales", "75015", "75056"),
    ("aides-investissement", "69002", "69123"),
)
DEMO_HISTORY_OUTCOMES = (
    MatchStatus.DONE,
    MatchStatus.DONE,
    MatchStatus.DONE_NO_HELP,
    MatchStatus.DONE,
    MatchStatus.DONE_NOT_REACHABLE,
    MatchStatus.NOT_FOR_ME,
    MatchStatus.DONE,
)
DEMO_HISTORY_MONTHS = 8
DEMO_HISTORY_PER_MONTH = 7
DEMO_HISTORY_DOMAIN = "historique-demo.example"


# Issue 16: a partner whose landing can be embedded from the demo partner site (make partner-site).
DEMO_PARTNER = "Portail de l'entrepreneur (démo)"
DEMO_LANDING = "portail-entrepreneur"
DEMO_PARTNER_ORIGINS = ["http://localhost:8000", "http://127.0.0.1:8000"]
DEMO_LANDING_SUBJECTS = {
    "recrutement": "Recruter mon premier salarié",
    "tresorerie": None,
    "export": None,
    "ceder-entreprise": None,
    "site-internet": None,
}


def _seed_partner() -> list[str]:
    if db.session.scalar(select(Landing.id).where(Landing.slug == DEMO_LANDING)):
        return [f"Landing de démonstration déjà présente : {DEMO_LANDING}"]
    institution = db.session.scalar(select(Institution).where(Institution.name == DEMO_REFERENT_INSTITUTION))
    partner = Partner(name=DEMO_PARTNER, institution=institution, origins=list(DEMO_PARTNER_ORIGINS))
    landing = Landing(
        partner=partner,
        slug=DEMO_LANDING,
        title="Les conseillers publics du Portail de l'entrepreneur",
        banner="Démonstration : les demandes déposées ici arrivent aux experts de l'annuaire de démonstration.",
    )
    subjects = {s.slug: s for s in db.session.scalars(select(Subject).where(Subject.slug.in_(DEMO_LANDING_SUBJECTS)))}
    for position, (slug, title) in enumerate(DEMO_LANDING_SUBJECTS.items()):
        if slug in subjects:
            landing.subjects.append(LandingSubject(subject=subjects[slug], title=title, position=position))
    db.session.add(landing)
    db.session.flush()
    return [f"Partenaire de démonstration créé : {DEMO_PARTNER}, landing « {DEMO_LANDING} »"]


# The history's channels, in turn (the statistics show requests by provenance).
DEMO_HISTORY_CHANNELS = ("site", "site", "iframe", "api", "site", "landing", "backoffice")


def _seed_history() -> list[str]:
    """Past requests submitted through the form's verb, answered through the experts' verb, then
    moved back in time (the days they waited for a taking in charge vary, so that the « within 5
    days » figure means something). Closed, every one: the follow-up has nothing to send them."""
    if db.session.scalar(select(Solicitation.id).where(Solicitation.email.like(f"%@{DEMO_HISTORY_DOMAIN}"))):
        return []
    created = 0
    serial = 0
    for months_ago in range(DEMO_HISTORY_MONTHS, 0, -1):
        for index in range(DEMO_HISTORY_PER_MONTH + months_ago % 3):
            serial += 1
            subject, postal_code, insee = DEMO_HISTORY_PLACES[serial % len(DEMO_HISTORY_PLACES)]
            base = f"9{serial:07d}{serial % 10}"[:9]
            siret = _luhn_siret(base)
            solicitation = submit_solicitation(
                SolicitationInput(
                    subject_slug=subject,
                    full_name=f"Entreprise historique {serial}",
                    email=f"contact{serial}@{DEMO_HISTORY_DOMAIN}",
                    phone="01 23 45 67 89",
                    siret=siret,
                    postal_code=postal_code,
                    insee_code=insee,
                    description="Demande de démonstration passée, pour les statistiques publiques du service.",
                    mtm_campaign="demo-historique",
                    **_history_channel(serial, subject),
                )
            )
            need = solicitation.need
            if need is None:
                continue
            outcome = DEMO_HISTORY_OUTCOMES[serial % len(DEMO_HISTORY_OUTCOMES)]
            for position, match in enumerate(need.matches):
                final = outcome if position == 0 else MatchStatus.NOT_FOR_ME
                if final in (MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE):
                    change_match_status(match, MatchStatus.TAKING_CARE)
                change_match_status(match, final)
            sent = utcnow() - timedelta(days=30 * months_ago + index * 3)
            _place_in_time(solicitation, sent, waited_days=1 + (serial * 3) % 9)
            created += 1
    return [f"Historique de démonstration : {created} demandes passées sur {DEMO_HISTORY_MONTHS} mois"]


def _history_channel(serial: int, subject_slug: str) -> dict:
    channel = DEMO_HISTORY_CHANNELS[serial % len(DEMO_HISTORY_CHANNELS)]
    values: dict = {"channel": channel}
    if channel in ("iframe", "landing") and subject_slug in DEMO_LANDING_SUBJECTS:
        values["landing_id"] = db.session.scalar(select(Landing.id).where(Landing.slug == DEMO_LANDING))
    if channel in ("iframe", "api"):
        values["origin_url"] = "http://localhost:8000/"
    return values


def _luhn_siret(siren_base: str) -> str:
    """A SIRET whose SIREN and SIRET both pass the Luhn check, from 8 or 9 digits."""
    from stdnum import luhn

    siren = siren_base[:8] + luhn.calc_check_digit(siren_base[:8])
    nic = "0001"
    return siren + nic + luhn.calc_check_digit(siren + nic)


def _place_in_time(solicitation: Solicitation, sent: datetime, *, waited_days: int) -> None:
    """Move a request, its need and matches to ``sent``: taken in charge ``waited_days`` later,
    closed two days after that."""
    solicitation.created_at = sent
    solicitation.processed_at = sent
    need = solicitation.need
    need.created_at = sent
    for match in need.matches:
        match.created_at = sent
        if match.taken_care_at is not None:
            match.taken_care_at = sent + timedelta(days=waited_days)
        if match.closed_at is not None:
            match.closed_at = sent + timedelta(days=waited_days + 2)
    db.session.flush()


# A question on the financing subject, and the answer Bpifrance takes (issue 14).
DEMO_QUESTION = (
    "financer-investissement",
    "montant",
    "Quel est le montant de votre projet ?",
    ["Moins de 50 000 €", "50 000 € ou plus"],
)
DEMO_EXPECTATION = ("Bpifrance", {"montant": "50 000 € ou plus"})


def _seed_questions() -> list[str]:
    slug, key, label, choices = DEMO_QUESTION
    found = db.session.scalar(select(Subject).where(Subject.slug == slug))
    if found is None:
        return []
    lines = []
    if (
        db.session.scalar(
            select(SubjectQuestion).where(SubjectQuestion.subject_id == found.id, SubjectQuestion.key == key)
        )
        is None
    ):
        db.session.add(SubjectQuestion(subject=found, key=key, label=label, choices=choices))
        lines.append(f"Question de démonstration sur « {found.label} » : {label}")
    name, answers = DEMO_EXPECTATION
    offer = db.session.scalar(
        select(InstitutionSubject)
        .join(Institution)
        .where(Institution.name == name, InstitutionSubject.subject_id == found.id)
    )
    if offer is not None and not db.session.scalar(
        select(OfferExpectation.id).where(OfferExpectation.institution_subject_id == offer.id)
    ):
        db.session.add(OfferExpectation(offer=offer, answers=answers))
        lines.append(f"Réponse attendue de démonstration : {name} prend « {answers['montant']} »")
    db.session.flush()
    return lines


def _seed_requests() -> list[str]:
    """Submit the demo requests through the form's own validation and the submission verb."""
    lines = []
    for subject, full_name, email, phone, siret, postal_code, insee, description, answer in DEMO_REQUESTS:
        if db.session.scalar(select(Solicitation.id).where(Solicitation.email == email)):
            continue
        cleaned = clean_solicitation(
            {
                "full_name": full_name,
                "email": email,
                "phone": phone,
                "siret": siret,
                "postal_code": postal_code,
                "insee_code": insee,
                "description": description,
            }
        )
        if cleaned.errors:
            raise ServiceError(f"Demande de démonstration invalide ({email}) : {cleaned.errors}")
        solicitation = submit_solicitation(
            SolicitationInput(subject_slug=subject, mtm_campaign="demo", **cleaned.values)
        )
        need = solicitation.need
        if answer and need is not None and need.matches:
            if answer == MatchStatus.DONE:  # help is proposed after taking the need in charge
                change_match_status(need.matches[0], MatchStatus.TAKING_CARE)
            change_match_status(need.matches[0], answer)
        if subject in DEMO_AGES and need is not None:
            _age(solicitation, DEMO_AGES[subject])
        routed = f"transmise à {len(need.matches)} expert(s)" if need is not None else "à qualifier"
        if need is None and solicitation.qualification_notes:
            routed += f" ({solicitation.qualification_notes[0]})"
        lines.append(f"Demande de démonstration « {subject} » ({insee}) : {routed}")
    return lines


def _age(solicitation: Solicitation, days: int) -> None:
    """Move a demo request ``days`` back in time, with its need and matches (closed ones close
    ``DEMO_HELPED_DAYS_AGO`` days ago)."""
    then = utcnow() - timedelta(days=days)
    solicitation.created_at = then
    need = solicitation.need
    need.created_at = then
    for match in need.matches:
        match.created_at = then
        if match.closed_at is not None:
            match.closed_at = utcnow() - timedelta(days=DEMO_HELPED_DAYS_AGO)
        if match.taken_care_at is not None:
            match.taken_care_at = then + timedelta(days=1)
    db.session.flush()
