"""The routing rule: which experts receive a need on subject S at commune C.

The commune resolves to its four codes (commune, EPCI, département, région); one SQL query
then looks zones up by ``(kind, code)`` — zones are never expanded to
communes, so a zone of a région stays one row
— and joins their owners to the experts who take S through their institution's offer. The
query returns every zone entry that matched; the most specific one per expert is kept here,
so staff see *why* each expert receives the need.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Integer, String, and_, bindparam, case, exists, literal_column, null, or_, select, union_all
from sqlalchemy.orm import contains_eager

from app.dates import in_paris, utcnow
from app.extensions import db
from app.models import (
    Antenne,
    Commune,
    Departement,
    Epci,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    OfferExpectation,
    Region,
    RoutingFilter,
    RoutingFilterSubject,
    Subject,
    Theme,
    Zone,
)
from app.services.addressbook.company_filters import CompanyFacts, Verdict
from app.services.addressbook.routing_filters import FILTER_COLUMNS, Check, FilterRow, checks_for, overall
from app.services.errors import ServiceError
from app.services.reference import geo
from app.services.reference.registry import headcount_text

NATIONAL = "national"
# Lower is more specific: the entry shown to staff is the narrowest that matched.
SPECIFICITY = {"commune": 0, "epci": 1, "departement": 2, "region": 3, NATIONAL: 4}
KIND_NAMES = {
    "commune": "commune",
    "epci": "EPCI",
    "departement": "département",
    "region": "région",
    NATIONAL: "national",
}
OWNER_NAMES = {"expert": "zone propre de l'expert", "antenne": "zone de l'antenne"}


@dataclass(frozen=True)
class RoutedExpert:
    """One expert who would receive the need, and the zone entry that made it pass."""

    expert_id: int
    expert: str
    email: str
    antenne_id: int
    antenne: str
    institution_id: int
    institution: str
    zone_kind: str
    zone_code: str | None
    zone_owner: str  # "expert" (its own zone) or "antenne"
    zone_label: str | None = None
    # The filters and expected answers evaluated for this expert (none: nothing narrows it).
    checks: tuple[Check, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return overall(self.checks)

    @property
    def unevaluated(self) -> bool:
        """Kept because a filter could not be evaluated: staff should look (issue 14)."""
        return self.verdict == Verdict.UNKNOWN

    @property
    def zone(self) -> str:
        return NATIONAL if self.zone_kind == NATIONAL else f"{self.zone_kind}:{self.zone_code}"

    @property
    def zone_text(self) -> str:
        """``département:69 (Rhône), zone de l'antenne``: what staff read."""
        if self.zone_kind == NATIONAL:
            entry = "national"
        else:
            entry = f"{KIND_NAMES[self.zone_kind]}:{self.zone_code}"
            if self.zone_label:
                entry += f" ({self.zone_label})"
        return f"{entry}, {OWNER_NAMES[self.zone_owner]}"

    def as_dict(self) -> dict[str, object]:
        return {
            "expert_id": self.expert_id,
            "expert": self.expert,
            "email": self.email,
            "antenne_id": self.antenne_id,
            "antenne": self.antenne,
            "institution_id": self.institution_id,
            "institution": self.institution,
            "zone": self.zone,
            "zone_label": self.zone_label,
            "zone_owner": self.zone_owner,
            "decision": str(self.verdict),
            "filters": [check.as_dict() for check in self.checks],
        }


@dataclass(frozen=True)
class Place:
    """A commune with the names of the territories it lies in, for the explanation's header."""

    codes: geo.TerritoryCodes
    commune: str
    epci: str | None
    departement: str
    region: str

    def label(self, kind: str) -> str | None:
        return {"commune": self.commune, "epci": self.epci, "departement": self.departement, "region": self.region}.get(
            kind
        )

    def describe(self) -> str:
        parts = [f"{self.commune} ({self.codes.commune})"]
        if self.codes.epci:
            parts.append(f"EPCI {self.epci} ({self.codes.epci})")
        parts.append(f"département {self.departement} ({self.codes.departement})")
        parts.append(f"région {self.region} ({self.codes.region})")
        return ", ".join(parts)


@dataclass
class RoutingExplanation:
    subject: Subject
    place: Place
    matches: list[RoutedExpert] = field(default_factory=list)
    # Found by subject × territory but refused by a filter or an institution's expected answers.
    excluded: list[RoutedExpert] = field(default_factory=list)
    company: CompanyFacts | None = None

    @property
    def unevaluated(self) -> list[RoutedExpert]:
        return [m for m in self.matches if m.unevaluated]

    def lines(self, *, show_excluded: bool = False) -> list[str]:
        header = f"Sujet « {self.subject.label} » ({self.subject.slug}) — commune : {self.place.describe()}"
        lines = [header]
        if self.company is not None:
            lines.append(f"Entreprise : {describe_company(self.company)}")
        if not self.matches:
            lines.append("Aucun expert ne recevrait cette demande.")
        else:
            count = len(self.matches)
            lines.append(
                f"{count} expert{'s' if count > 1 else ''} recevrai{'en' if count > 1 else ''}t cette demande :"
            )
            for m in self.matches:
                lines.append(f"- {m.expert} <{m.email}> — antenne {m.antenne} — {m.institution} — zone : {m.zone_text}")
                lines += [f"    {check.text}" for check in m.checks]
        if self.unevaluated:
            lines.append(
                "Attention : un filtre n'a pas pu être évalué ; en mode automatique la demande attendrait l'équipe."
            )
        if show_excluded:
            if not self.excluded:
                lines.append("Aucun expert exclu par un filtre.")
            else:
                lines.append(f"Exclus par un filtre ({len(self.excluded)}) :")
                for m in self.excluded:
                    lines.append(f"- {m.expert} <{m.email}> — antenne {m.antenne} — {m.institution}")
                    lines += [f"    {check.text}" for check in m.checks if check.verdict == Verdict.REFUSED]
        elif self.excluded:
            lines.append(f"{len(self.excluded)} expert(s) exclu(s) par un filtre (--show-excluded pour le détail).")
        return lines


def describe_company(company: CompanyFacts) -> str:
    """The facts a filter reads, as one line (« non renseigné » where the registry said nothing)."""
    unknown = "non renseigné"
    parts = [
        f"NAF {company.naf_code or unknown}",
        f"effectif {headcount_text(company.headcount_code) if company.headcount_code else unknown}",
        f"création {company.created_on.strftime('%d/%m/%Y') if company.created_on else unknown}",
        f"forme juridique {company.legal_form or unknown}",
        f"nature {company.activity_nature or unknown}",
    ]
    return ", ".join(parts)


def unevaluated_reasons(experts: list[RoutedExpert]) -> list[str]:
    """Why a request must wait for staff because of filters: one French line per filter that
    could not be evaluated (an institution's filter is named once, not once per expert)."""
    seen: dict[str, str] = {}
    for found in experts:
        for check in found.checks:
            if check.verdict == Verdict.UNKNOWN and check.source not in seen:
                seen[check.source] = f"Filtre non évalué : {check.source} ({' ; '.join(check.reasons)})."
    return list(seen.values())


# ---------------------------------------------------------------- the query


_TERRITORY_KINDS = ("commune", "epci", "departement", "region")


def _territory():
    """The commune's four ``(kind, code)`` references as a four-row table, kinds inlined and
    codes bound (an absent EPCI binds NULL, which matches nothing). Joined to zones, each row
    is one index-only probe of ``zones(kind, code, …)``: no BitmapOr, no heap visit, and the
    text never changes. (A UNION ALL of constants rather than VALUES: SQLite cannot name the
    columns of a VALUES list.)"""
    return union_all(
        *[select(_const(kind).label("kind"), bindparam(kind, type_=String).label("code")) for kind in _TERRITORY_KINDS]
    ).subquery("territory")


def _const(value: str):
    """An inlined string constant: a bound parameter of unknown type would trouble UNION ALL."""
    return literal_column(f"'{value}'", String)


@functools.cache
def routing_query():
    """The rule as one statement: every (expert, matching zone entry) pair, sorted for display.

    Built once, with bound parameters ``subject_id`` and the four territory codes: building
    this statement costs more than running it, and one SQL text lets psycopg prepare it.

    Two branches, UNION ALL. The expert's entries — its own zone rows matching the commune,
    and its national flag — joined to the expert; the antenne's entries — zone rows and
    national flag — joined to the antenne's experts without an own zone (derived with NOT
    EXISTS, never stored). Gathering each owner's entries first keeps the national flags,
    rare and few, in the same nested loop as the zone rows instead of a hash over every
    antenne. Each branch keeps only antennes whose institution offers the subject *before*
    reaching their experts, so the database probes the experts' subjects for a few hundred
    candidates, not thousands; and each branch carries the columns shown, so nothing is
    joined twice.
    """
    subject_id = bindparam("subject_id", type_=Integer)
    offer = InstitutionSubject
    own = Zone.__table__.alias("own")
    no_own_zone = and_(~Expert.national, ~exists().where(own.c.expert_id == Expert.id))
    live = and_(Expert.deleted_at.is_(None), Antenne.deleted_at.is_(None), Institution.deleted_at.is_(None))
    by_expert, by_antenne, national = _const("expert"), _const("antenne"), _const(NATIONAL)
    no_code = null().cast(Zone.code.type)

    def entries(owner_id, owner_pk, flagged, name):
        """The owner's zone rows that contain the commune, and its national flag, as rows
        ``(owner_id, kind, code)``."""
        territory = _territory()
        in_territory = (
            select(owner_id.label("owner_id"), Zone.kind.label("kind"), Zone.code.label("code"))
            .select_from(territory)
            .join(Zone, and_(Zone.kind == territory.c.kind, Zone.code == territory.c.code))
            .where(owner_id.is_not(None))
        )
        flag = select(owner_pk, national, no_code).where(flagged)
        return union_all(in_territory, flag).subquery(name)

    def branch(found, owner):
        return select(
            Expert.id.label("expert_id"),
            Expert.full_name.label("expert"),
            Expert.email.label("email"),
            Antenne.id.label("antenne_id"),
            Antenne.name.label("antenne"),
            Institution.id.label("institution_id"),
            Institution.name.label("institution"),
            found.c.kind.label("kind"),
            found.c.code.label("code"),
            owner.label("owner"),
            offer.id.label("offer_id"),
        )

    def offered(stmt):
        return stmt.join(Institution, Institution.id == Antenne.institution_id).join(
            offer, and_(offer.institution_id == Antenne.institution_id, offer.subject_id == subject_id)
        )

    expert_entries = entries(Zone.expert_id, Expert.id, Expert.national, "expert_entries")
    expert_rows = offered(
        branch(expert_entries, by_expert)
        .select_from(expert_entries)
        .join(Expert, Expert.id == expert_entries.c.owner_id)
        .join(Antenne, Antenne.id == Expert.antenne_id)
    ).where(live)
    antenne_entries = entries(Zone.antenne_id, Antenne.id, Antenne.national, "antenne_entries")
    antenne_rows = (
        offered(
            branch(antenne_entries, by_antenne)
            .select_from(antenne_entries)
            .join(Antenne, Antenne.id == antenne_entries.c.owner_id)
        )
        .join(Expert, Expert.antenne_id == Antenne.id)
        .where(no_own_zone, live)
    )
    candidates = union_all(expert_rows, antenne_rows).subquery("candidates")

    c = candidates.c
    specificity = case(
        *[(c.kind == _const(kind), literal_column(str(rank))) for kind, rank in SPECIFICITY.items()],
        else_=literal_column(str(len(SPECIFICITY))),
    )
    subject_routable = exists().where(Subject.id == subject_id, Subject.is_offered)
    # What narrows the candidate beyond the zone rule (issue 14), in the same statement: the
    # filters of its institution, antenne and itself that apply to the subject, one row each
    # (none: NULLs), so that routing stays two queries with or without filters. The filters
    # are few; PostgreSQL probes their three indexes per candidate row.
    applies = or_(
        ~exists().where(RoutingFilterSubject.routing_filter_id == RoutingFilter.id),
        exists().where(
            RoutingFilterSubject.routing_filter_id == RoutingFilter.id, RoutingFilterSubject.subject_id == subject_id
        ),
    )
    holds = or_(
        RoutingFilter.institution_id == c.institution_id,
        RoutingFilter.antenne_id == c.antenne_id,
        RoutingFilter.expert_id == c.expert_id,
    )
    # Expected answers are rarer still: a flag, read by a query of their own when set.
    has_expectation = c.offer_id.in_(select(OfferExpectation.institution_subject_id))
    return (
        select(
            c.expert_id,
            c.expert,
            c.email,
            c.antenne_id,
            c.antenne,
            c.institution_id,
            c.institution,
            c.kind,
            c.code,
            c.owner,
            has_expectation.label("has_expectation"),
            *[column.label(f"filter_{column.key}") for column in FILTER_COLUMNS],
        )
        .select_from(candidates)
        .join(
            ExpertSubject,
            and_(ExpertSubject.expert_id == c.expert_id, ExpertSubject.institution_subject_id == c.offer_id),
        )
        .outerjoin(RoutingFilter, and_(holds, applies))
        .where(subject_routable)
        .order_by(c.institution, c.antenne, c.expert, c.expert_id, specificity, RoutingFilter.id)
    )


@dataclass
class Candidates:
    """The zone rule's experts, the filters that apply to each, and who expects answers."""

    experts: list[RoutedExpert] = field(default_factory=list)
    filters: dict[int, dict[int, FilterRow]] = field(default_factory=dict)  # expert id → filter id → filter
    expecting: set[int] = field(default_factory=set)  # experts whose institution expects answers


def _route(subject_id: int, codes: geo.TerritoryCodes) -> Candidates:
    found = Candidates()
    seen: set[int] = set()
    # Rows come sorted by expert then specificity: the first row of an expert is its narrowest entry.
    params = {"subject_id": subject_id, "commune": codes.commune, "epci": codes.epci}
    params |= {"departement": codes.departement, "region": codes.region}
    # Columns by position: 0–9 the expert and its zone entry, 10 the expectation flag, 11– a filter.
    # Core execution on the session's connection (same transaction): the rows are plain
    # columns, and the ORM's execution layer would add a quarter of a millisecond per call.
    for row in db.session.connection().execute(routing_query(), params):
        expert_id = row[0]
        if row[11] is not None:
            found.filters.setdefault(expert_id, {})[row[11]] = FilterRow(*row[11:])
        if expert_id in seen:
            continue
        seen.add(expert_id)
        found.experts.append(RoutedExpert(*row[:10]))
        if row[10]:
            found.expecting.add(expert_id)
    return found


# ---------------------------------------------------------------- verbs


# Catch-all subjects (« autre demande ») are never routed automatically: staff qualify them.
CATCH_ALL_SUBJECT_SLUGS = frozenset({"autre", "autre-demande", "other"})


def unroutable_reason(subject: Subject | None) -> str | None:
    """Why a request on ``subject`` cannot go to experts automatically (French), or None: the
    one place that says which subjects routing takes."""
    if subject is None or not subject.is_offered:
        return "Sujet non aiguillable : ce sujet est archivé."
    if subject.slug in CATCH_ALL_SUBJECT_SLUGS:
        return "Sujet non aiguillable : une demande « autre » est qualifiée par l'équipe."
    return None


def _decide(
    subject_id: int,
    codes: geo.TerritoryCodes,
    company: CompanyFacts | None,
    answers: Mapping[str, str] | None,
) -> tuple[list[RoutedExpert], list[RoutedExpert]]:
    """The zone rule's candidates split into those kept (accepted, or kept unevaluated) and
    those a filter or their institution's expected answers refused, each with its checks."""
    candidates = _route(subject_id, codes)
    company = company or CompanyFacts(commune_code=codes.commune)
    checks = checks_for(
        candidates.experts,
        candidates.filters,
        subject_id,
        [c for c in candidates.experts if c.expert_id in candidates.expecting],
        company,
        answers,
        today=in_paris(utcnow()).date(),
    )
    kept: list[RoutedExpert] = []
    excluded: list[RoutedExpert] = []
    for found in candidates.experts:
        if found.expert_id in checks:
            found = dataclasses.replace(found, checks=checks[found.expert_id])
        (excluded if found.verdict == Verdict.REFUSED else kept).append(found)
    return kept, excluded


def route_company(
    subject_id: int,
    insee_code: str,
    company: CompanyFacts | None = None,
    answers: Mapping[str, str] | None = None,
) -> tuple[list[RoutedExpert], list[RoutedExpert]]:
    """:func:`find_experts` with those a filter excluded: ``(kept, excluded)``."""
    codes = geo.commune_codes(insee_code)
    if codes is None:
        raise ServiceError(f"Commune inconnue : code INSEE « {insee_code} ».")
    return _decide(subject_id, codes, company, answers)


def checks_record(kept: list[RoutedExpert], excluded: list[RoutedExpert]) -> list[dict[str, object]]:
    """What a need keeps of routing's filters (``Need.routing_checks``): each expert they
    concerned, kept or excluded, with the checks in French."""
    return [
        {
            "expert_id": found.expert_id,
            "expert": found.expert,
            "antenne": found.antenne,
            "institution": found.institution,
            "decision": str(found.verdict),
            "checks": [check.text for check in found.checks],
        }
        for found in [*kept, *excluded]
        if found.checks
    ]


def find_experts(
    subject_id: int,
    insee_code: str,
    company: CompanyFacts | None = None,
    answers: Mapping[str, str] | None = None,
) -> list[RoutedExpert]:
    """The experts who receive a need on ``subject_id`` at commune ``insee_code`` for this
    company (its registry facts and its answers to the subject's questions), in a few queries.

    An archived or unknown subject routes to nobody; an unknown commune is an error, since a
    need's commune was validated when it was submitted. Without ``company`` only the commune
    is known: a filter on another fact keeps its experts « non évalué ».
    """
    return route_company(subject_id, insee_code, company, answers)[0]


def _place(insee_code: str) -> Place | None:
    row = db.session.execute(
        select(
            Commune.code,
            Commune.epci_code,
            Commune.departement_code,
            Commune.region_code,
            Commune.name,
            Epci.name,
            Departement.name,
            Region.name,
        )
        .outerjoin(Epci, Epci.code == Commune.epci_code)
        .join(Departement, Departement.code == Commune.departement_code)
        .join(Region, Region.code == Commune.region_code)
        .where(Commune.code == (insee_code or "").strip().upper())
    ).first()
    if row is None:
        return None
    return Place(geo.TerritoryCodes(*row[:4]), *row[4:])


@dataclass
class CommuneLookup:
    """What a typed commune resolved to: one INSEE code, or several communes to choose from."""

    insee_code: str | None = None
    choices: list[Commune] = field(default_factory=list)


_CODE_IN_LABEL = re.compile(r"\((2[AB]\d{3}|\d{5})\)\s*$", re.IGNORECASE)


def resolve_commune(text: str) -> CommuneLookup:
    """Turn what staff typed — an INSEE code, a postal code, ``Lyon (69123)`` as the
    autocomplete offers it, or a name — into one commune, or the communes to choose among.

    Raises ServiceError (French) when nothing matches.
    """
    text = (text or "").strip()
    if not text:
        raise ServiceError("Indiquez une commune : nom, code postal ou code INSEE.")
    found = _CODE_IN_LABEL.search(text)
    code = (found.group(1) if found else text).upper()
    if re.fullmatch(r"2[AB]\d{3}|\d{5}", code):
        by_insee = db.session.get(Commune, code)
        communes = {c.code: c for c in geo.communes_for_postal_code(code)}
        if by_insee is not None:
            communes.setdefault(by_insee.code, by_insee)
        if len(communes) == 1:
            return CommuneLookup(insee_code=next(iter(communes)))
        if communes:
            return CommuneLookup(choices=sorted(communes.values(), key=lambda c: (c.name, c.code)))
        raise ServiceError(f"Aucune commune n'a le code INSEE ou le code postal « {code} ».")
    items = geo.search_territories(text, kinds=["commune"], limit=12)
    codes = [item["id"].split(":", 1)[1] for item in items]
    named = [code for code, item in zip(codes, items, strict=True) if _name_of(item["text"]) == text.casefold()]
    if len(named) == 1 or len(codes) == 1:
        return CommuneLookup(insee_code=(named or codes)[0])
    if codes:
        communes = {c.code: c for c in db.session.scalars(select(Commune).where(Commune.code.in_(named or codes)))}
        return CommuneLookup(choices=[communes[c] for c in (named or codes) if c in communes])
    raise ServiceError(f"Aucune commune ne correspond à « {text} ».")


def _name_of(label: str) -> str:
    """``Commune : Lyon (69123)`` → ``lyon``."""
    return label.split(" : ", 1)[-1].rsplit(" (", 1)[0].casefold()


def commune_suggestions(query: str) -> list[dict[str, str]]:
    """Autocomplete items ``{"id": INSEE, "text": "Lyon (69123)"}`` for the simulator's field."""
    return [
        {"id": item["id"].split(":", 1)[1], "text": item["text"].split(" : ", 1)[-1]}
        for item in geo.search_territories(query, kinds=["commune"], limit=20)
    ]


def routable_subjects() -> list[tuple[Theme, list[Subject]]]:
    """The catalog's offered subjects grouped by theme, in catalog order."""
    grouped: dict[int, tuple[Theme, list[Subject]]] = {}
    stmt = (
        select(Subject)
        .join(Subject.theme)
        .where(Subject.is_offered)
        .options(contains_eager(Subject.theme))
        .order_by(Theme.position, Theme.id, Subject.position, Subject.id)
    )
    for found in db.session.scalars(stmt):
        grouped.setdefault(found.theme_id, (found.theme, []))[1].append(found)
    return list(grouped.values())


def explain(
    subject_slug: str,
    insee_code: str,
    company: CompanyFacts | None = None,
    answers: Mapping[str, str] | None = None,
) -> RoutingExplanation:
    """Who would receive a need on this subject at this commune for this company, through
    which zone entry and which filters — and who a filter excluded."""
    subject = db.session.scalar(select(Subject).where(Subject.slug == (subject_slug or "").strip()))
    if subject is None:
        raise ServiceError(f"Sujet inconnu : « {subject_slug} » n'est pas dans le catalogue.")
    if not subject.is_offered:
        raise ServiceError(f"Le sujet « {subject.label} » est archivé : aucune demande ne lui est aiguillée.")
    place = _place(insee_code)
    if place is None:
        raise ServiceError(f"Commune inconnue : code INSEE « {insee_code} ».")
    kept, excluded = _decide(subject.id, place.codes, company, answers)

    def labelled(found: RoutedExpert) -> RoutedExpert:
        return dataclasses.replace(found, zone_label=place.label(found.zone_kind))

    return RoutingExplanation(
        subject=subject,
        place=place,
        matches=[labelled(m) for m in kept],
        excluded=[labelled(m) for m in excluded],
        company=company,
    )
