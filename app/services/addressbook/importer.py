"""Importing partners' address-book CSV files.

The CSV format: ``institution,antenne,antenne_zone,expert,email,phone,job_title,subjects,
expert_zone``, UTF-8, one row per expert (the README says what each column holds). An import is all or nothing: every row is checked first and
every problem reported with its file line number, so a partner fixes the whole file at once;
only a clean file is written, in one transaction. The file is authoritative for what it
states about each expert it lists (name, phone, job title, subjects, own zone) and for the
zone of each antenne it gives one; experts it does not list are left alone, because a
partial file must never delete anyone. An empty ``antenne_zone`` on every row of an antenne
keeps its zone; an empty ``expert_zone`` clears the expert's override (the row is the
expert's whole description). An existing institution counts as updated when the file adds
offers of subjects to it, its only attribute the file can change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Antenne, Expert, ExpertSubject, Institution, InstitutionSubject, Subject
from app.services.addressbook.addressbook import replace_zone, slugify, spec_state, zone_state, zone_text
from app.services.addressbook.import_file import (
    ImportReport,
    Row,
    RowPreview,
    check_territories,
    decode,
    parse_rows,
    read_records,
)
from app.services.reference import geo

# ---------------------------------------------------------------- the existing address book


@dataclass
class _Book:
    """What the import needs of the database, loaded in a fixed number of queries."""

    subjects: dict[str, Subject]
    by_name: dict[str, Institution] = field(default_factory=dict)
    by_slug: dict[str, Institution] = field(default_factory=dict)
    antennes: dict[tuple[int, str], Antenne] = field(default_factory=dict)
    experts: dict[tuple[int, str], Expert] = field(default_factory=dict)
    offers: dict[tuple[int, int], InstitutionSubject] = field(default_factory=dict)

    def institution(self, name: str) -> Institution | None:
        return self.by_name.get(name) or self.by_slug.get(slugify(name))


def _load_book(rows: list[Row], subjects: dict[str, Subject]) -> _Book:
    book = _Book(subjects=subjects)
    for institution in db.session.scalars(select(Institution)):
        book.by_name[institution.name] = institution
        book.by_slug[institution.slug] = institution
    institution_ids = {i.id for row in rows if (i := book.institution(row.institution))}
    if not institution_ids:
        return book
    for antenne in db.session.scalars(
        select(Antenne).where(Antenne.institution_id.in_(institution_ids)).options(selectinload(Antenne.zones))
    ):
        book.antennes[(antenne.institution_id, antenne.name)] = antenne
    for offer in db.session.scalars(
        select(InstitutionSubject).where(InstitutionSubject.institution_id.in_(institution_ids))
    ):
        book.offers[(offer.institution_id, offer.subject_id)] = offer
    antenne_ids = [a.id for a in book.antennes.values()]
    if antenne_ids:
        for expert in db.session.scalars(
            select(Expert)
            .where(Expert.antenne_id.in_(antenne_ids), Expert.deleted_at.is_(None))
            .options(selectinload(Expert.zones), selectinload(Expert.subjects))
        ):
            book.experts[(expert.antenne_id, (expert.email or "").lower())] = expert
    return book


# ---------------------------------------------------------------- cross-row checks


def _check_consistency(rows: list[Row], book: _Book, report: ImportReport) -> None:
    """Rules that span rows or the database: one zone per antenne, one expert per email, no
    silent resurrection of a deleted institution or antenne."""
    zones: dict[tuple[str, str], tuple[int, geo.ZoneSpec]] = {}
    emails: dict[tuple[str, str, str], int] = {}
    deleted_reported: set[Any] = set()
    for row in rows:
        institution = book.institution(row.institution)
        inst_key = f"id:{institution.id}" if institution else f"new:{slugify(row.institution)}"
        antenne_key = (inst_key, row.antenne)
        if row.antenne_zone:
            first = zones.get(antenne_key)
            if first is None:
                zones[antenne_key] = (row.line, row.antenne_zone)
            elif spec_state(first[1]) != spec_state(row.antenne_zone):
                report.error(
                    row.line,
                    f"la zone de l'antenne « {row.antenne} » (« {row.antenne_zone} ») diffère de celle "
                    f"donnée ligne {first[0]} (« {first[1]} ») : une antenne n'a qu'une zone",
                )
        email_key = (inst_key, row.antenne, row.email)
        if email_key in emails:
            report.error(
                row.line,
                f"l'email « {row.email} » figure déjà ligne {emails[email_key]} pour l'antenne « {row.antenne} »",
            )
        else:
            emails[email_key] = row.line
        if institution and institution.is_deleted:
            if institution.id not in deleted_reported:
                deleted_reported.add(institution.id)
                report.error(
                    row.line,
                    f"l'institution « {institution.name} » a été supprimée : restaurez-la avant d'importer",
                )
            continue
        antenne = book.antennes.get((institution.id, row.antenne)) if institution else None
        if antenne and antenne.is_deleted and ("antenne", antenne.id) not in deleted_reported:
            deleted_reported.add(("antenne", antenne.id))
            report.error(row.line, f"l'antenne « {antenne.name} » a été supprimée : restaurez-la avant d'importer")


# ---------------------------------------------------------------- plan and apply


def _subject_names(ids: Iterable[int], subjects_by_id: dict[int, Subject]) -> str:
    slugs = sorted(subjects_by_id[i].slug for i in ids if i in subjects_by_id)
    return ";".join(slugs) or "aucun"


def _apply(rows: list[Row], book: _Book, report: ImportReport, *, write: bool) -> None:
    """Walk the rows once, counting what changes; with ``write``, make the changes in the session.

    New records are tracked by key, so a dry run reports a new antenne's experts as created
    without creating anything.
    """
    subjects_by_id = {s.id: s for s in book.subjects.values()}
    institutions: dict[str, Institution | None] = {}  # key -> record (None: would be created)
    antennes: dict[tuple[str, str], Antenne | None] = {}
    offers_seen: set[tuple[str, int]] = set()
    new_offers: dict[tuple[str, int], InstitutionSubject] = {}
    antenne_zones: dict[tuple[str, str], geo.ZoneSpec] = {}
    for row in rows:
        if row.antenne_zone:
            institution = book.institution(row.institution)
            key = f"id:{institution.id}" if institution else f"new:{slugify(row.institution)}"
            antenne_zones.setdefault((key, row.antenne), row.antenne_zone)
    updated_institutions: set[str] = set()
    offers_by_id = {o.id: o for o in book.offers.values()}

    for row in rows:
        existing_institution = book.institution(row.institution)
        inst_key = f"id:{existing_institution.id}" if existing_institution else f"new:{slugify(row.institution)}"
        if inst_key not in institutions:
            if existing_institution is None:
                report.institutions.count("create")
                created = Institution(name=row.institution, slug=slugify(row.institution)) if write else None
                if created is not None:
                    db.session.add(created)
                institutions[inst_key] = created
            else:
                institutions[inst_key] = existing_institution
        institution = institutions[inst_key]

        # The institution's offers of the row's subjects.
        offer_for: dict[int, InstitutionSubject | None] = {}
        for slug in row.subjects:
            subject = book.subjects[slug]
            offer = book.offers.get((existing_institution.id, subject.id)) if existing_institution else None
            if offer is None and (inst_key, subject.id) not in offers_seen:
                offers_seen.add((inst_key, subject.id))
                report.offers_created += 1
                if existing_institution:
                    updated_institutions.add(inst_key)
                if write:
                    new_offers[(inst_key, subject.id)] = InstitutionSubject(institution=institution, subject=subject)
            offer_for[subject.id] = offer or new_offers.get((inst_key, subject.id))

        # The antenne, and its zone when the file gives one.
        antenne_key = (inst_key, row.antenne)
        if antenne_key not in antennes:
            existing_antenne = (
                book.antennes.get((existing_institution.id, row.antenne)) if existing_institution else None
            )
            spec = antenne_zones.get(antenne_key)
            if existing_antenne is None:
                report.antennes.count("create")
                created_antenne = None
                if write:
                    created_antenne = Antenne(institution=institution, name=row.antenne)
                    if spec:
                        replace_zone(created_antenne, spec)
                    db.session.add(created_antenne)
                antennes[antenne_key] = created_antenne
            else:
                changed = spec is not None and spec_state(spec) != zone_state(existing_antenne)
                report.antennes.count("update" if changed else "unchanged")
                if changed and write:
                    replace_zone(existing_antenne, spec)
                antennes[antenne_key] = existing_antenne
        antenne = antennes[antenne_key]

        # The expert.
        expert = book.experts.get((antenne.id, row.email)) if antenne is not None and antenne.id else None
        wanted_zone = row.expert_zone or geo.ZoneSpec()
        wanted_subjects = {book.subjects[slug].id for slug in row.subjects}
        preview = RowPreview(row.line, row.institution, row.antenne, row.expert, row.email, "create")
        report.rows.append(preview)
        if expert is None:
            report.experts.count("create")
            if write:
                expert = Expert(
                    antenne=antenne, full_name=row.expert, email=row.email, phone=row.phone, job_title=row.job_title
                )
                replace_zone(expert, wanted_zone)
                for subject_id in wanted_subjects:
                    expert.subjects.append(ExpertSubject(institution_subject=offer_for[subject_id]))
                db.session.add(expert)
            continue

        changes: dict[str, tuple[str, str]] = {}
        for label, attr, value in (
            ("nom", "full_name", row.expert),
            ("téléphone", "phone", row.phone),
            ("fonction", "job_title", row.job_title),
        ):
            if getattr(expert, attr) != value:
                changes[label] = (getattr(expert, attr) or "", value or "")
                if write:
                    setattr(expert, attr, value)
        # Links to subjects no longer offered are left alone: the file cannot name them, routing ignores them.
        current: dict[int, ExpertSubject] = {}
        for link in expert.subjects:
            offer = offers_by_id.get(link.institution_subject_id)
            if offer is not None and subjects_by_id[offer.subject_id].is_offered:
                current[offer.subject_id] = link
        if set(current) != wanted_subjects:
            changes["sujets"] = (
                _subject_names(current, subjects_by_id),
                _subject_names(wanted_subjects, subjects_by_id),
            )
            if write:
                for subject_id, link in current.items():
                    if subject_id not in wanted_subjects:
                        expert.subjects.remove(link)
                for subject_id in wanted_subjects - set(current):
                    expert.subjects.append(ExpertSubject(institution_subject=offer_for[subject_id]))
        if zone_state(expert) != spec_state(wanted_zone):
            changes["zone propre"] = (zone_text(zone_state(expert)), zone_text(spec_state(wanted_zone)))
            if write:
                replace_zone(expert, wanted_zone)
        preview.action = "update" if changes else "unchanged"
        preview.changes = changes
        report.experts.count(preview.action)

    report.institutions.updated = len(updated_institutions)
    report.institutions.unchanged = sum(
        1 for key, record in institutions.items() if key.startswith("id:") and key not in updated_institutions
    )


# ---------------------------------------------------------------- scope (partner referents)

# What a person imports into: one institution or antenne (``policy.referent_scope``), or all.
Scope = Institution | Antenne | None


def scope_label(scope: Scope) -> str:
    """« CMA Bretagne » or « l'antenne CMA Rennes (CMA Bretagne) », as the import page says it."""
    if isinstance(scope, Antenne):
        return f"l'antenne « {scope.name} » ({scope.institution.name})"
    if isinstance(scope, Institution):
        return f"« {scope.name} »"
    return "toutes les institutions"


def _check_scope(rows: list[Row], book: _Book, scope: Scope, report: ImportReport) -> None:
    """A referent imports only the experts of their institution (or antenne): any other row is
    an error, so a file meant for someone else is refused whole rather than half applied. An
    antenne referent creates neither antennes nor offers of new subjects for the institution
    (the policy gives them neither right in the back office)."""
    if scope is None:
        return
    institution = scope.institution if isinstance(scope, Antenne) else scope
    for row in rows:
        found = book.institution(row.institution)
        if found is None or found.id != institution.id:
            report.error(
                row.line,
                f"l'institution « {row.institution} » n'est pas la vôtre : vous ne pouvez importer que "
                f"les experts de « {institution.name} »",
            )
            continue
        if not isinstance(scope, Antenne):
            continue
        if row.antenne != scope.name:
            if (institution.id, row.antenne) in book.antennes:
                problem = f"l'antenne « {row.antenne} » n'est pas la vôtre"
            else:
                problem = f"l'antenne « {row.antenne} » n'existe pas et vous ne pouvez pas en créer"
            report.error(row.line, f"{problem} : vous ne pouvez importer que les experts de l'antenne « {scope.name} »")
        missing = [
            slug
            for slug in row.subjects
            if slug in book.subjects and (institution.id, book.subjects[slug].id) not in book.offers
        ]
        if missing:
            report.error(
                row.line,
                f"« {institution.name} » ne propose pas encore : {', '.join(missing)} ; seul un référent de "
                "l'institution ou l'équipe support peut ajouter un sujet à son offre",
            )


def import_addressbook(raw: bytes | str, *, dry_run: bool = False, scope: Scope = None) -> ImportReport:
    """Check the whole file, then (unless ``dry_run`` or any error) apply it, in the caller's
    transaction: all of it or none.

    The report always carries every error found and, for a clean file, what happens to each
    row; a dry run computes exactly what a real run would do, without writing. ``scope`` (see
    ``policy.referent_scope``) limits the file to one institution or antenne; None for staff.
    """
    report = ImportReport(dry_run=dry_run)
    text = decode(raw, report)
    if text is None:
        return report
    parsed = read_records(text, report)
    if parsed is None:
        return report
    header, records = parsed
    report.rows_read = len(records)
    subjects = {s.slug: s for s in db.session.scalars(select(Subject))}
    rows = parse_rows(header, records, subjects, report)
    check_territories(rows, report)
    book = _load_book(rows, subjects)
    _check_scope(rows, book, scope, report)
    _check_consistency(rows, book, report)
    if report.errors:
        report.errors.sort(key=lambda e: e.line or 0)
        return report
    with db.session.no_autoflush:
        _apply(rows, book, report, write=not dry_run)
    if not dry_run:
        db.session.flush()
    return report
