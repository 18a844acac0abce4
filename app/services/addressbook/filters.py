"""Routing filters as people write them: one set of checks for the back-office form and the
import file (``flask addressbook filters``), so that a value refused in one is refused, with the
same French words, in the other.

The import file is the whole set of filters of each holder it names (an institution, an
antenne or an expert): a holder's filters absent from the file are removed, those already
there are left untouched (an import run twice writes nothing the second time), the others are
created. All or nothing: one error and nothing is written.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Antenne, Commune, Expert, Institution, RoutingFilter, RoutingFilterSubject, Subject
from app.models.filters import CODE_LIST_COLUMNS, NUMBER_COLUMNS
from app.services.addressbook.company_filters import ACTIVITY_NATURES, NAF_SECTIONS
from app.services.addressbook.import_file import decode, read_records
from app.services.errors import ServiceError

COLUMNS = ["institution", "antenne", "expert_email", "subjects", *NUMBER_COLUMNS, *CODE_LIST_COLUMNS]

FIELD_LABELS = {
    "min_years": "Années d'existence minimum",
    "max_years": "Années d'existence maximum",
    "min_headcount": "Effectif minimum",
    "max_headcount": "Effectif maximum",
    "naf_accepted": "Codes NAF acceptés",
    "naf_excluded": "Codes NAF exclus",
    "legal_forms_accepted": "Formes juridiques acceptées",
    "legal_forms_excluded": "Formes juridiques exclues",
    "activities_accepted": "Natures d'activité acceptées",
    "excluded_communes": "Communes exclues",
}

# A section letter, a division (47), a group (47.1), a class (47.11) or a sub-class (47.11Z).
_NAF = re.compile(r"^(?:[A-U]|\d{2}(?:\.\d{1,2}[A-Z]?)?)$")
_LEGAL_FORM = re.compile(r"^\d{1,4}$")
_COMMUNE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_MAX_NUMBER = 100_000


# ---------------------------------------------------------------- one filter's values


@dataclass
class CleanedFilter:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def signature(self) -> tuple:
        """What makes two filters the same filter (the import compares these)."""
        return tuple(self.values.get(name) for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS))


def _number(text: str) -> int | str | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > _MAX_NUMBER:
        return "attendu : un nombre entier positif (par exemple 10)"
    return int(text)


def _code_list(name: str, text: str) -> str | tuple[str, str]:
    """The normalised list (``"47 56.10A"``) or ``("error", message)``."""
    items = list(dict.fromkeys((text or "").replace(",", " ").replace(";", " ").split()))
    bad: list[str] = []
    if name.startswith("naf"):
        items = [item.upper() for item in items]
        bad = [item for item in items if not _NAF.match(item) or (item.isalpha() and item not in NAF_SECTIONS)]
        hint = "codes NAF attendus : une section (C), une division (47) ou un code (47.11Z)"
    elif name.startswith("legal_forms"):
        bad = [item for item in items if not _LEGAL_FORM.match(item)]
        hint = "formes juridiques attendues : 1 à 4 chiffres de la catégorie juridique (5499, 57)"
    elif name == "activities_accepted":
        items = [item.lower() for item in items]
        bad = [item for item in items if item not in ACTIVITY_NATURES]
        hint = "natures attendues : " + ", ".join(ACTIVITY_NATURES)
    else:
        items = [item.upper() for item in items]
        bad = [item for item in items if not _COMMUNE.match(item)]
        if not bad and items:
            known = set(db.session.scalars(select(Commune.code).where(Commune.code.in_(items))))
            unknown = [item for item in items if item not in known]
            if unknown:
                return ("error", f"commune(s) inconnue(s) : {', '.join(unknown)} (codes INSEE attendus)")
        hint = "codes INSEE de communes attendus (69123)"
    if bad:
        return ("error", f"valeur(s) non reconnue(s) : {', '.join(bad)} — {hint}")
    return " ".join(items)


def clean_filter(raw: dict[str, Any]) -> CleanedFilter:
    """Check a filter's criteria as typed (text or numbers); French message per field."""
    cleaned = CleanedFilter()
    for name in NUMBER_COLUMNS:
        value = raw.get(name)
        value = _number(str(value)) if value is not None else None
        if isinstance(value, str):
            cleaned.errors[name] = value
        else:
            cleaned.values[name] = value
    for name in CODE_LIST_COLUMNS:
        value = _code_list(name, str(raw.get(name) or ""))
        limit = RoutingFilter.__table__.c[name].type.length
        if isinstance(value, tuple):
            cleaned.errors[name] = value[1]
        elif len(value) > limit:
            cleaned.errors[name] = f"liste trop longue ({len(value)} caractères, {limit} au plus) : scindez le filtre"
        else:
            cleaned.values[name] = value
    for low, high, what in (("min_years", "max_years", "années"), ("min_headcount", "max_headcount", "effectif")):
        low_value, high_value = cleaned.values.get(low), cleaned.values.get(high)
        if low_value is not None and high_value is not None and low_value > high_value:
            cleaned.errors[high] = f"{what} : le maximum est inférieur au minimum"
    if not cleaned.errors and not any(v not in (None, "") for v in cleaned.values.values()):
        cleaned.errors["min_years"] = "un filtre sans aucun critère n'exclut personne : indiquez au moins un critère"
    return cleaned


def set_filter_subjects(routing_filter: RoutingFilter, subjects: list[Subject]) -> None:
    wanted = {s.id for s in subjects}
    for link in list(routing_filter.subject_links):
        if link.subject_id not in wanted:
            routing_filter.subject_links.remove(link)
    have = {link.subject_id for link in routing_filter.subject_links}
    for found in subjects:
        if found.id not in have:
            routing_filter.subject_links.append(RoutingFilterSubject(subject=found))


def apply_filter(routing_filter: RoutingFilter, raw: dict[str, Any], subjects: list[Subject]) -> RoutingFilter:
    """Write checked values into a filter (the back-office form's save); ServiceError listing
    the problems otherwise."""
    cleaned = clean_filter(raw)
    if cleaned.errors:
        raise ServiceError(" ".join(f"{FIELD_LABELS[name]} : {message}." for name, message in cleaned.errors.items()))
    holders = [routing_filter.institution, routing_filter.antenne, routing_filter.expert]
    if sum(holder is not None for holder in holders) != 1:
        raise ServiceError("Un filtre appartient à une seule institution, une seule antenne ou un seul expert.")
    for name, value in cleaned.values.items():
        setattr(routing_filter, name, value)
    set_filter_subjects(routing_filter, subjects)
    return routing_filter


# ---------------------------------------------------------------- the import file


@dataclass
class FilterReport:
    dry_run: bool = False
    rows_read: int = 0
    errors: list[str] = field(default_factory=list)
    holders: int = 0
    created: int = 0
    removed: int = 0
    unchanged: int = 0

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(f"ligne {line} : {message}" if line is not None else message)

    def lines(self) -> list[str]:
        lines = [f"lignes de filtres lues : {self.rows_read}"]
        if not self.errors:
            lines.append(
                f"filtres de {self.holders} institution(s), antenne(s) ou expert(s) : "
                f"{self.created} créé(s), {self.removed} supprimé(s), {self.unchanged} inchangé(s)"
            )
        return lines


@dataclass
class _Line:
    line: int
    holder: tuple[str, int]  # ("institution" | "antenne" | "expert", id)
    subjects: list[Subject]
    cleaned: CleanedFilter

    @property
    def key(self) -> tuple:
        return (tuple(sorted(s.id for s in self.subjects)), self.cleaned.signature)


def _holder(cells: dict[str, str], line: int, report: FilterReport) -> tuple[str, Any] | None:
    name = cells["institution"]
    if not name:
        report.error(line, "colonne institution vide : chaque filtre nomme son institution")
        return None
    institution = db.session.scalar(
        select(Institution).where(
            Institution.deleted_at.is_(None),
            (func.lower(Institution.name) == name.lower()) | (Institution.slug == name.lower()),
        )
    )
    if institution is None:
        report.error(line, f"institution inconnue : « {name} » (nom ou identifiant de l'annuaire)")
        return None
    antenne = None
    if cells["antenne"]:
        antenne = db.session.scalar(
            select(Antenne).where(
                Antenne.institution_id == institution.id,
                Antenne.deleted_at.is_(None),
                func.lower(Antenne.name) == cells["antenne"].lower(),
            )
        )
        if antenne is None:
            report.error(line, f"antenne inconnue : « {cells['antenne']} » n'est pas une antenne de {institution.name}")
            return None
    if cells["expert_email"]:
        stmt = (
            select(Expert)
            .join(Antenne)
            .where(
                Expert.deleted_at.is_(None),
                func.lower(Expert.email) == cells["expert_email"].lower(),
                Antenne.institution_id == institution.id,
            )
        )
        if antenne is not None:
            stmt = stmt.where(Expert.antenne_id == antenne.id)
        experts = list(db.session.scalars(stmt))
        if len(experts) != 1:
            where = f"l'antenne {antenne.name}" if antenne else institution.name
            problem = "aucun expert" if not experts else "plusieurs experts (précisez l'antenne)"
            report.error(line, f"{problem} à l'adresse « {cells['expert_email']} » dans {where}")
            return None
        return ("expert", experts[0])
    if antenne is not None:
        return ("antenne", antenne)
    return ("institution", institution)


def _subjects(text: str, line: int, report: FilterReport, catalog: dict[str, Subject]) -> list[Subject] | None:
    slugs = list(dict.fromkeys(part.strip() for part in (text or "").split(";") if part.strip()))
    unknown = [slug for slug in slugs if slug not in catalog]
    if unknown:
        report.error(line, f"sujet(s) inconnu(s) : {', '.join(unknown)} (identifiants du catalogue, séparés par « ; »)")
        return None
    return [catalog[slug] for slug in slugs]


_HOLDER_COLUMN = {"institution": RoutingFilter.institution_id, "antenne": RoutingFilter.antenne_id}


def _existing(kind: str, ident: int) -> list[RoutingFilter]:
    column = _HOLDER_COLUMN.get(kind, RoutingFilter.expert_id)
    return list(
        db.session.scalars(
            select(RoutingFilter)
            .where(column == ident)
            .options(selectinload(RoutingFilter.subject_links))
            .order_by(RoutingFilter.id)
        )
    )


def _key_of(routing_filter: RoutingFilter) -> tuple:
    subjects = tuple(sorted(link.subject_id for link in routing_filter.subject_links))
    return (subjects, tuple(getattr(routing_filter, name) for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)))


def import_filters(raw: bytes | str, *, dry_run: bool = False) -> FilterReport:
    """Read, check and (unless ``dry_run`` or an error) write a filters file."""
    report = FilterReport(dry_run=dry_run)
    text = decode(raw, report)
    if text is None:
        return report
    read = read_records(text, report, columns=COLUMNS, what="de filtre")
    if read is None:
        return report
    header, records = read
    catalog = {s.slug: s for s in db.session.scalars(select(Subject))}
    lines: list[_Line] = []
    for number, record in records:
        report.rows_read += 1
        if len(record) != len(header):
            report.error(number, f"{len(record)} colonne(s) au lieu de {len(header)}")
            continue
        cells = {name: value.strip() for name, value in zip(header, record, strict=True)}
        holder = _holder(cells, number, report)
        subjects = _subjects(cells["subjects"], number, report, catalog)
        cleaned = clean_filter({name: cells[name] for name in (*NUMBER_COLUMNS, *CODE_LIST_COLUMNS)})
        for name, message in cleaned.errors.items():
            report.error(number, f"{name} : {message}")
        if holder is None or subjects is None or cleaned.errors:
            continue
        lines.append(_Line(number, (holder[0], holder[1].id), subjects, cleaned))
    if report.errors:
        return report

    by_holder: dict[tuple[str, int], list[_Line]] = {}
    for item in lines:
        by_holder.setdefault(item.holder, []).append(item)
    report.holders = len(by_holder)
    for (kind, ident), wanted in by_holder.items():
        existing = _existing(kind, ident)
        remaining = Counter(item.key for item in wanted)
        for routing_filter in existing:
            key = _key_of(routing_filter)
            if remaining[key] > 0:
                remaining[key] -= 1
                report.unchanged += 1
            else:
                report.removed += 1
                if not dry_run:
                    db.session.delete(routing_filter)
        for item in wanted:
            if remaining[item.key] <= 0:
                continue
            remaining[item.key] -= 1
            report.created += 1
            if not dry_run:
                routing_filter = RoutingFilter(**{f"{kind}_id": ident}, **item.cleaned.values)
                set_filter_subjects(routing_filter, item.subjects)
                db.session.add(routing_filter)
    if not dry_run:
        db.session.flush()
    return report
