"""Coverage of an institution's (or an antenne's) territory, subject by subject.

The territory of reference is the union of the scope's live antennes' zones (a national
antenne: all of France). For each subject the institution offers, a commune of that territory
is covered when at least one of the scope's experts would receive a need there under the
routing rule (live expert, antenne and institution; the expert takes the subject
through the institution's offer; the commune lies in the expert's own zone when it has one,
else in its antenne's). A commune with several such experts is an overlap.

Everything is counted by the database, per département, without Python loops over communes
(see "the queries" below for how the sets stay small); Python then handles at most subjects ×
départements figures. The communes of one département are listed on demand.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Integer, and_, case, cast, exists, func, not_, null, or_, select, union
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    Antenne,
    Commune,
    Departement,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Subject,
    Zone,
)
from app.services.errors import ServiceError

COVERED, PARTIAL, UNCOVERED, OUTSIDE = "covered", "partial", "uncovered", "outside"
STATE_LABELS = {
    COVERED: "couvert",
    PARTIAL: "partiellement couvert",
    UNCOVERED: "non couvert",
    OUTSIDE: "hors territoire",
}


# ---------------------------------------------------------------- results


@dataclass
class DepartementCoverage:
    """One département of the territory for one subject."""

    code: str
    name: str
    communes: int  # communes of the territory in this département
    covered: int
    overlapping: int

    @property
    def uncovered(self) -> int:
        return self.communes - self.covered

    @property
    def state(self) -> str:
        if self.covered >= self.communes:
            return COVERED
        return PARTIAL if self.covered else UNCOVERED

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]


@dataclass
class SubjectCoverage:
    subject_id: int
    slug: str
    label: str
    experts: int  # the scope's experts taking the subject
    national_experts: int
    departements: list[DepartementCoverage] = field(default_factory=list)
    # The routing filters and expected answers of the scope that apply to the subject (issue 14):
    # a commune counted as covered is covered only for the companies they accept.
    narrowed_by: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for d in self.departements if d.state == state)

    @property
    def communes(self) -> int:
        return sum(d.communes for d in self.departements)

    @property
    def uncovered_communes(self) -> int:
        return sum(d.uncovered for d in self.departements)

    @property
    def overlapping_communes(self) -> int:
        return sum(d.overlapping for d in self.departements)

    @property
    def gaps(self) -> list[DepartementCoverage]:
        return [d for d in self.departements if d.state != COVERED]

    def states(self) -> dict[str, str]:
        """Département code → state, for the map."""
        return {d.code: d.state for d in self.departements}


@dataclass
class CoverageReport:
    institution: Institution
    antenne: Antenne | None
    national: bool  # the territory is all of France
    territory_communes: int
    territory_departements: int
    subjects: list[SubjectCoverage] = field(default_factory=list)

    @property
    def scope_name(self) -> str:
        if self.antenne is not None:
            return f"Antenne {self.antenne.name} ({self.institution.name})"
        return self.institution.name

    def subject(self, slug: str | None) -> SubjectCoverage | None:
        return next((s for s in self.subjects if s.slug == slug), None)


@dataclass
class CommuneCoverage:
    code: str
    name: str
    experts: list[str]  # names of the scope's experts covering it (national ones included)


@dataclass
class FixCandidate:
    """A record whose edit can close a gap: an antenne touching the département, or an expert."""

    kind: str  # "antenne" or "expert"
    id: int
    name: str
    detail: str
    takes_subject: bool = False


@dataclass
class DepartementDetail:
    """The communes of one département for one subject, and who could fill its gaps."""

    subject: SubjectCoverage
    departement: DepartementCoverage
    uncovered: list[CommuneCoverage]
    overlapping: list[CommuneCoverage]
    antennes: list[FixCandidate]
    experts: list[FixCandidate]

    def overlap_groups(self) -> list[tuple[tuple[str, ...], list[CommuneCoverage]]]:
        """Overlapping communes grouped by the same set of experts (« A, B : 290 communes »)."""
        groups: dict[tuple[str, ...], list[CommuneCoverage]] = defaultdict(list)
        for commune in self.overlapping:
            groups[tuple(commune.experts)].append(commune)
        return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


# ---------------------------------------------------------------- the queries
#
# A zone entry contains a commune according to four of its attributes only: its code (when an
# entry lists it), its EPCI, its département and its région. Communes that agree on those —
# the communes of one EPCI inside one département that no entry lists one by one — are
# covered alike, so the report counts such *cells* (a few thousand for all of France) rather
# than 35,000 communes: each cell carries its number of communes.
#
# Experts are counted per *zone owner*: every expert without an own zone shares its antenne's,
# so each antenne's zone is expanded once and weighted by how many of its experts take each
# subject; an expert with an own zone is its own owner. The owner key is the expert's id (own
# zone) or minus its antenne's id (the antenne's zone): each expert has exactly one, so summing
# weights counts each expert once. National experts cover everything and are counted apart.


def _cte(stmt, name: str):
    """A CTE PostgreSQL computes once: inlined, its poor estimates of these derived sets turn
    hash joins into row-by-row loops."""
    return stmt.cte(name).prefix_with("MATERIALIZED", dialect="postgresql")


def _scope_antennes(institution_id: int, antenne_id: int | None):
    """Ids of the scope's live antennes (none at all when the institution is deleted)."""
    stmt = (
        select(Antenne.id)
        .join(Institution, Institution.id == Antenne.institution_id)
        .where(Antenne.institution_id == institution_id, Antenne.deleted_at.is_(None), Institution.deleted_at.is_(None))
    )
    if antenne_id is not None:
        stmt = stmt.where(Antenne.id == antenne_id)
    return stmt


class _Scope:
    """The statements of one scope (an institution, or one of its antennes)."""

    def __init__(self, institution_id: int, antenne_id: int | None) -> None:
        self.institution_id = institution_id
        self.antennes = _scope_antennes(institution_id, antenne_id)
        self.national = bool(db.session.scalar(select(exists(self.antennes.where(Antenne.national)))))
        has_own = or_(Expert.national, exists().where(Zone.expert_id == Expert.id))
        self.owner = case((has_own, Expert.id), else_=-Expert.antenne_id)
        self.is_national = or_(Expert.national, and_(not_(has_own), Antenne.national))

    def taking(self, *columns):
        """``columns`` over the scope's live experts × the offered, non-archived subjects they take."""
        return (
            select(*columns)
            .select_from(ExpertSubject)
            .join(InstitutionSubject, InstitutionSubject.id == ExpertSubject.institution_subject_id)
            .join(Subject, Subject.id == InstitutionSubject.subject_id)
            .join(Expert, Expert.id == ExpertSubject.expert_id)
            .join(Antenne, Antenne.id == Expert.antenne_id)
            .where(
                InstitutionSubject.institution_id == self.institution_id,
                Subject.is_offered,
                Expert.deleted_at.is_(None),
                Antenne.id.in_(self.antennes),
            )
        )

    def weights(self, subject_id: int | None = None):
        """``(subject_id, owner_id, weight)``: bounded-zone experts of each owner taking each subject."""
        stmt = (
            self.taking(InstitutionSubject.subject_id, self.owner.label("owner_id"), func.count().label("weight"))
            .where(not_(self.is_national))
            .group_by(InstitutionSubject.subject_id, self.owner)
        )
        if subject_id is not None:
            stmt = stmt.where(InstitutionSubject.subject_id == subject_id)
        return _cte(stmt, "weights")

    def territory_refs(self):
        return _cte(select(Zone.kind, Zone.code).where(Zone.antenne_id.in_(self.antennes)), "territory_refs")

    @staticmethod
    def owner_entries(weights):
        """``(owner_id, kind, code)``: the zone rows of the owners in ``weights``."""
        owners = weights.c.owner_id
        return _cte(
            union(
                select(Zone.expert_id.label("owner_id"), Zone.kind, Zone.code).where(
                    Zone.expert_id.in_(select(owners).where(owners > 0))
                ),
                select((-Zone.antenne_id).label("owner_id"), Zone.kind, Zone.code).where(
                    Zone.antenne_id.in_(select(-owners).where(owners < 0))
                ),
            ),
            "owner_entries",
        )


def _joined(entries, target, columns, kinds_columns, *where):
    """``columns`` of ``target`` rows contained in the ``(kind, code)`` rows of ``entries``: one
    equi-join per kind (each can use an index), UNION removing the repeats."""
    return union(
        *[
            select(*columns)
            .select_from(target)
            .join(entries, and_(entries.c.kind == kind, entries.c.code == column))
            .where(*where)
            for kind, column in kinds_columns
        ]
    )


def _cells(refs, entries):
    """``(key, departement_code, region_code, epci_code, listed_code, communes)``: the communes
    grouped by the attributes a zone entry can test; ``listed_code`` is set for the communes an
    entry lists one by one (each its own cell)."""
    listed = union(
        select(refs.c.code).where(refs.c.kind == "commune"),
        select(entries.c.code).where(entries.c.kind == "commune"),
    )
    listed_code = case((Commune.code.in_(listed), Commune.code), else_=null())
    key = Commune.departement_code + "|" + func.coalesce(Commune.epci_code, "") + "|" + func.coalesce(listed_code, "")
    per_commune = select(
        key.label("key"),
        Commune.departement_code,
        Commune.region_code,
        Commune.epci_code,
        listed_code.label("listed_code"),
    ).subquery("commune_cells")
    c = per_commune.c
    return _cte(
        select(
            c.key, c.departement_code, c.region_code, c.epci_code, c.listed_code, func.count().label("communes")
        ).group_by(c.key, c.departement_code, c.region_code, c.epci_code, c.listed_code),
        "cells",
    )


def _cell_columns(cells):
    return (
        ("commune", cells.c.listed_code),
        ("epci", cells.c.epci_code),
        ("departement", cells.c.departement_code),
        ("region", cells.c.region_code),
    )


_COMMUNE_COLUMNS = (
    ("commune", Commune.code),
    ("epci", Commune.epci_code),
    ("departement", Commune.departement_code),
    ("region", Commune.region_code),
)


def _offered_subjects(institution_id: int) -> list[tuple[int, str, str]]:
    return list(
        db.session.execute(
            select(Subject.id, Subject.slug, Subject.label)
            .join(InstitutionSubject, InstitutionSubject.subject_id == Subject.id)
            .where(InstitutionSubject.institution_id == institution_id, Subject.is_offered)
            .order_by(Subject.label)
        ).all()
    )


def coverage_report(institution: Institution, antenne: Antenne | None = None) -> CoverageReport:
    """Coverage of each subject the institution offers over the scope's territory, per
    département, in a fixed number of queries whatever the size of the territory."""
    scope = _Scope(institution.id, antenne.id if antenne is not None else None)
    takers = {
        subject_id: (count, int(national or 0))
        for subject_id, count, national in db.session.execute(
            scope.taking(
                InstitutionSubject.subject_id, func.count(), func.sum(cast(scope.is_national, Integer))
            ).group_by(InstitutionSubject.subject_id)
        )
    }

    weights = scope.weights()
    refs = scope.territory_refs()
    entries = scope.owner_entries(weights)
    cells = _cells(refs, entries)
    cell_columns = (cells.c.key, cells.c.departement_code, cells.c.communes)
    if scope.national:
        territory = _cte(select(*cell_columns), "territory")
    else:
        territory = _cte(_joined(refs, cells, cell_columns, _cell_columns(cells)), "territory")
    reach = _cte(
        _joined(entries, cells, (entries.c.owner_id, cells.c.key), _cell_columns(cells)),
        "reach",
    )
    w, r, t = weights.c, reach.c, territory.c
    per_cell = (
        select(w.subject_id, r.key, func.sum(w.weight).label("n"))
        .join(reach, r.owner_id == w.owner_id)
        .group_by(w.subject_id, r.key)
        .subquery("per_cell")
    )
    pc = per_cell.c
    figures = {
        (subject_id, code): (int(one or 0), int(two or 0))
        for subject_id, code, one, two in db.session.execute(
            select(
                pc.subject_id,
                t.departement_code,
                func.sum(t.communes),
                func.sum(case((pc.n >= 2, t.communes), else_=0)),
            )
            .join(territory, t.key == pc.key)
            .group_by(pc.subject_id, t.departement_code)
        )
    }
    per_departement = {
        code: int(count)
        for code, count in db.session.execute(
            select(t.departement_code, func.sum(t.communes)).group_by(t.departement_code)
        )
    }
    names = dict(
        db.session.execute(
            select(Departement.code, Departement.name).where(Departement.code.in_(list(per_departement)))
        ).all()
    )

    narrowing = _narrowing(scope, institution.id)
    report = CoverageReport(
        institution=institution,
        antenne=antenne,
        national=scope.national,
        territory_communes=sum(per_departement.values()),
        territory_departements=len(per_departement),
    )
    order = sorted(per_departement)
    for subject_id, slug, label in _offered_subjects(institution.id):
        count, national_count = takers.get(subject_id, (0, 0))
        subject = SubjectCoverage(subject_id, slug, label, experts=count, national_experts=national_count)
        subject.narrowed_by = [text for applies, text in narrowing if applies is None or subject_id in applies]
        for code in order:
            communes = per_departement[code]
            one, two = figures.get((subject_id, code), (0, 0))
            # A national expert covers every commune: one of them makes every commune covered
            # and every commune another expert reaches an overlap; two, every commune an overlap.
            if national_count >= 2:
                one = two = communes
            elif national_count == 1:
                one, two = communes, one
            subject.departements.append(DepartementCoverage(code, names.get(code, code), communes, one, two))
        report.subjects.append(subject)
    return report


def _narrowing(scope: _Scope, institution_id: int) -> list[tuple[set[int] | None, str]]:
    """The scope's filters (its institution's, its antennes', its experts') and its offers'
    expected answers, each with the subjects it applies to (None: all), in words."""
    from app.models import OfferExpectation, RoutingFilter
    from app.models.filters import CODE_LIST_COLUMNS, NUMBER_COLUMNS
    from app.services.addressbook.filters import FIELD_LABELS

    experts = select(Expert.id).where(Expert.antenne_id.in_(scope.antennes), Expert.deleted_at.is_(None))
    held = db.session.scalars(
        select(RoutingFilter)
        .where(
            or_(
                RoutingFilter.institution_id == institution_id,
                RoutingFilter.antenne_id.in_(scope.antennes),
                RoutingFilter.expert_id.in_(experts),
            )
        )
        .options(
            selectinload(RoutingFilter.subject_links),
            selectinload(RoutingFilter.antenne),
            selectinload(RoutingFilter.expert),
            selectinload(RoutingFilter.institution),
        )
        .order_by(RoutingFilter.id)
    )
    found: list[tuple[set[int] | None, str]] = []
    for routing_filter in held:
        criteria = " ; ".join(
            f"{FIELD_LABELS[name].lower()} {getattr(routing_filter, name)}"
            for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)
            if getattr(routing_filter, name) not in (None, "")
        )
        subjects = {link.subject_id for link in routing_filter.subject_links} or None
        found.append((subjects, f"filtre #{routing_filter.id} ({routing_filter.holder_text}) : {criteria}"))
    expectations = db.session.execute(
        select(InstitutionSubject.subject_id, OfferExpectation.answers)
        .join(OfferExpectation, OfferExpectation.institution_subject_id == InstitutionSubject.id)
        .where(InstitutionSubject.institution_id == institution_id)
    )
    for subject_id, answers in expectations:
        words = ", ".join(f"{key} = {value}" for key, value in sorted((answers or {}).items()))
        found.append(({subject_id}, f"réponses attendues : {words}"))
    return found


def departement_detail(
    institution: Institution, antenne: Antenne | None, subject_slug: str, departement_code: str
) -> DepartementDetail:
    """The communes of one département of the territory for one subject: those nobody covers,
    those several experts cover (with their names), and who could close the gaps. One
    département is at most a thousand communes: they are listed one by one."""
    subject_row = next((row for row in _offered_subjects(institution.id) if row[1] == subject_slug), None)
    if subject_row is None:
        raise ServiceError(f"« {institution.name} » ne propose pas le sujet « {subject_slug} ».")
    departement = db.session.get(Departement, (departement_code or "").upper())
    if departement is None:
        raise ServiceError(f"Département inconnu : « {departement_code} ».")
    subject_id = subject_row[0]
    scope = _Scope(institution.id, antenne.id if antenne is not None else None)
    in_departement = Commune.departement_code == departement.code
    commune_columns = (Commune.code.label("code"), Commune.name.label("name"))
    if scope.national:
        territory_stmt = select(*commune_columns).where(in_departement)
    else:
        territory_stmt = _joined(scope.territory_refs(), Commune, commune_columns, _COMMUNE_COLUMNS, in_departement)
    communes = sorted(db.session.execute(territory_stmt).all(), key=lambda row: (row.name, row.code))
    if not communes:
        raise ServiceError(f"Le département {departement.name} n'est pas dans le territoire de {institution.name}.")

    takers = db.session.execute(
        scope.taking(Expert.full_name, scope.owner, scope.is_national).where(
            InstitutionSubject.subject_id == subject_id
        )
    ).all()
    national_names = [name for name, _owner, national in takers if national]
    names_by_owner: dict[int, list[str]] = defaultdict(list)
    for name, owner, national in takers:
        if not national:
            names_by_owner[owner].append(name)
    weights = scope.weights(subject_id)
    entries = scope.owner_entries(weights)
    by_commune: dict[str, list[str]] = defaultdict(list)
    reached = _joined(entries, Commune, (entries.c.owner_id, Commune.code), _COMMUNE_COLUMNS, in_departement)
    for owner, code in db.session.execute(reached):
        by_commune[code].extend(names_by_owner.get(owner, []))

    rows = [CommuneCoverage(code, name, sorted(by_commune.get(code, []) + national_names)) for code, name in communes]
    covered = sum(1 for row in rows if row.experts)
    overlapping = [row for row in rows if len(row.experts) >= 2]
    subject = SubjectCoverage(subject_id, subject_row[1], subject_row[2], len(takers), len(national_names))
    figures = DepartementCoverage(departement.code, departement.name, len(rows), covered, len(overlapping))
    subject.departements = [figures]
    antennes, candidates = _fix_candidates(scope, departement, subject_id)
    return DepartementDetail(
        subject=subject,
        departement=figures,
        uncovered=[row for row in rows if not row.experts],
        overlapping=overlapping,
        antennes=antennes,
        experts=candidates,
    )


def _touching(departement: Departement):
    """A condition on ``Zone``: the zone row names territory inside or around the département."""
    in_departement = select(Commune.code).where(Commune.departement_code == departement.code)
    epcis = select(Commune.epci_code).where(
        Commune.departement_code == departement.code, Commune.epci_code.is_not(None)
    )
    return or_(
        and_(Zone.kind == "departement", Zone.code == departement.code),
        and_(Zone.kind == "region", Zone.code == departement.region_code),
        and_(Zone.kind == "epci", Zone.code.in_(epcis)),
        and_(Zone.kind == "commune", Zone.code.in_(in_departement)),
    )


def _fix_candidates(scope: _Scope, departement: Departement, subject_id: int):
    """The scope's antennes whose zone reaches the département, and the experts who could close
    a gap there: those of these antennes, and those whose own zone reaches it."""
    touching = _touching(departement)
    antenne_ids = select(Zone.antenne_id).where(Zone.antenne_id.is_not(None), touching)
    antennes = list(
        db.session.scalars(
            select(Antenne)
            .where(Antenne.id.in_(scope.antennes), or_(Antenne.national, Antenne.id.in_(antenne_ids)))
            .options(selectinload(Antenne.zones))
            .order_by(Antenne.name)
        )
    )
    own_zone_ids = select(Zone.expert_id).where(Zone.expert_id.is_not(None), touching)
    experts = list(
        db.session.scalars(
            select(Expert)
            .where(
                Expert.deleted_at.is_(None),
                Expert.antenne_id.in_(scope.antennes),
                or_(Expert.antenne_id.in_([a.id for a in antennes]), Expert.national, Expert.id.in_(own_zone_ids)),
            )
            .options(selectinload(Expert.zones), selectinload(Expert.antenne))
            .order_by(Expert.full_name)
        )
    )
    takers = set(db.session.scalars(scope.taking(Expert.id).where(InstitutionSubject.subject_id == subject_id)))
    antenne_rows = [FixCandidate("antenne", a.id, a.name, "zone : " + _zone_summary(a)) for a in antennes]
    expert_rows = []
    for expert in experts:
        zone = "zone propre : " + _zone_summary(expert) if expert.has_own_zone else "zone de l'antenne"
        taking = expert.id in takers
        detail = (
            "traite ce sujet" if taking else "ne traite pas ce sujet"
        ) + f" ; {zone} ; antenne {expert.antenne.name}"
        expert_rows.append(FixCandidate("expert", expert.id, expert.full_name, detail, taking))
    return antenne_rows, expert_rows


def _zone_summary(owner: Antenne | Expert) -> str:
    if owner.national:
        return "nationale"
    return " ".join(zone.reference for zone in owner.zones) or "aucune"
