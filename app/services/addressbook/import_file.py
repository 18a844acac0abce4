"""An address-book file read and checked row by row: its encoding, its columns, each cell's
value, the territories it names. What comes out is a list of rows and a report of every problem
with its line number; ``importer`` then compares the rows with the address book and writes them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from app.models import Subject
from app.services.addressbook.addressbook import slugify
from app.services.errors import ServiceError
from app.services.reference import geo

COLUMNS = ["institution", "antenne", "antenne_zone", "expert", "email", "phone", "job_title", "subjects", "expert_zone"]
REQUIRED = ["institution", "antenne", "expert", "email"]
MAX_LENGTHS = {"institution": 200, "antenne": 200, "expert": 200, "email": 254, "phone": 40, "job_title": 200}

ACTION_LABELS = {"create": "création", "update": "mise à jour", "unchanged": "inchangé"}


# ---------------------------------------------------------------- report


@dataclass(frozen=True)
class ImportIssue:
    """One problem of the file; ``line`` is the file line (header = 1), None for the whole file."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return f"ligne {self.line} : {self.message}" if self.line is not None else self.message


@dataclass
class RowPreview:
    """What the import does (or would do) to the expert of one data line."""

    line: int
    institution: str
    antenne: str
    expert: str
    email: str
    action: str  # create, update, unchanged
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def action_label(self) -> str:
        return ACTION_LABELS[self.action]


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def count(self, action: str) -> None:
        name = {"create": "created", "update": "updated", "unchanged": "unchanged"}[action]
        setattr(self, name, getattr(self, name) + 1)


@dataclass
class ImportReport:
    dry_run: bool = False
    rows_read: int = 0
    errors: list[ImportIssue] = field(default_factory=list)
    institutions: Counts = field(default_factory=Counts)
    antennes: Counts = field(default_factory=Counts)
    experts: Counts = field(default_factory=Counts)
    offers_created: int = 0
    rows: list[RowPreview] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(ImportIssue(line, message))

    def lines(self) -> list[str]:
        lines = [f"lignes d'experts lues : {self.rows_read}"]
        if self.errors:
            return lines
        for label, counts, feminine in (
            ("institutions", self.institutions, True),
            ("antennes", self.antennes, True),
            ("experts", self.experts, False),
        ):
            e = "e" if feminine else ""
            updated = "mise(s) à jour" if feminine else "mis à jour"
            lines.append(
                f"{label} : {counts.created} créé{e}(s), {counts.updated} {updated}, {counts.unchanged} inchangé{e}(s)"
            )
        lines.append(f"offres de sujets des institutions : {self.offers_created} créée(s)")
        return lines


# ---------------------------------------------------------------- parsing


@dataclass
class Row:
    line: int
    institution: str
    antenne: str
    antenne_zone: geo.ZoneSpec | None
    expert: str
    email: str
    phone: str | None
    job_title: str | None
    subjects: list[str]
    expert_zone: geo.ZoneSpec | None


def decode(raw: bytes | str, report: Any) -> str | None:
    if isinstance(raw, str):
        text = raw.removeprefix("\ufeff")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            report.error(
                line,
                "le fichier n'est pas encodé en UTF-8 (caractère illisible) : enregistrez-le au format « CSV UTF-8 »",
            )
            return None
    # A NUL byte means a binary file renamed .csv; the database would refuse it anyway.
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        report.error(
            line, "le fichier contient des caractères binaires (octet nul) : ce n'est pas un fichier CSV texte"
        )
        return None
    return text


def read_records(
    text: str, report: Any, *, columns: Sequence[str] = COLUMNS, what: str = "d'expert"
) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """The header and the non-blank records with their starting file line (``columns``: the
    header the file must carry; ``report``: anything with ``error(line, message)``)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in record]
                header_line = start
            else:
                records.append((start, record))
    except csv.Error as error:
        report.error(previous_end + 1, f"ligne CSV illisible ({error})")
        return None
    if header is None:
        report.error(None, "Le fichier est vide : il doit commencer par la ligne d'en-tête " + ",".join(columns))
        return None
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in columns]
    duplicated = sorted({c for c in header if c in columns and header.count(c) > 1})
    if missing:
        report.error(header_line, f"colonne(s) manquante(s) dans l'en-tête : {', '.join(missing)}")
    if extra:
        report.error(header_line, f"colonne(s) inconnue(s) dans l'en-tête : {', '.join(extra)}")
    if duplicated:
        report.error(header_line, f"colonne(s) en double dans l'en-tête : {', '.join(duplicated)}")
    if missing or extra or duplicated:
        return None
    if not records:
        report.error(None, f"Le fichier ne contient aucune ligne {what} après l'en-tête")
        return None
    return header, records


def _parse_zone_field(value: str, column: str, line: int, report: ImportReport) -> geo.ZoneSpec | None:
    try:
        spec = geo.parse_zone(value)
    except ServiceError as error:
        report.error(line, f"{column} : {str(error).rstrip('.')}")
        return None
    return None if spec.is_empty else spec


def parse_rows(
    header: list[str], records: list[tuple[int, list[str]]], subjects: dict[str, Subject], report: ImportReport
) -> list[Row]:
    rows: list[Row] = []
    for line, record in records:
        if len(record) != len(header):
            report.error(line, f"{len(record)} colonne(s) au lieu de {len(header)}")
            continue
        cells = {name: value.strip() for name, value in zip(header, record, strict=True)}
        problems = len(report.errors)
        for column in REQUIRED:
            if not cells[column]:
                report.error(line, f"la colonne « {column} » est vide")
        for column, limit in MAX_LENGTHS.items():
            if len(cells[column]) > limit:
                report.error(line, f"la colonne « {column} » dépasse {limit} caractères")
        if cells["institution"] and not slugify(cells["institution"]):
            report.error(line, f"le nom d'institution « {cells['institution']} » ne contient ni lettre ni chiffre")
        email = ""
        if cells["email"]:
            try:
                email = validate_email(cells["email"], check_deliverability=False).normalized.lower()
            except EmailNotValidError:
                report.error(line, f"adresse email invalide « {cells['email']} »")
        slugs: list[str] = []
        for slug in (s.strip().lower() for s in cells["subjects"].split(";")):
            if not slug or slug in slugs:
                continue
            found = subjects.get(slug)
            if found is None:
                report.error(line, f"sujet inconnu « {slug} »")
            elif not found.is_offered:
                report.error(line, f"le sujet « {slug} » est archivé")
            slugs.append(slug)
        antenne_zone = _parse_zone_field(cells["antenne_zone"], "antenne_zone", line, report)
        expert_zone = _parse_zone_field(cells["expert_zone"], "expert_zone", line, report)
        if len(report.errors) > problems:
            continue
        rows.append(
            Row(
                line=line,
                institution=cells["institution"],
                antenne=cells["antenne"],
                antenne_zone=antenne_zone,
                expert=cells["expert"],
                email=email,
                phone=cells["phone"] or None,
                job_title=cells["job_title"] or None,
                subjects=slugs,
                expert_zone=expert_zone,
            )
        )
    return rows


def check_territories(rows: list[Row], report: ImportReport) -> None:
    """Check every territory code of the file in one query per kind."""
    references: list[tuple[str, str]] = []
    for row in rows:
        for spec in (row.antenne_zone, row.expert_zone):
            if spec:
                references.extend(spec.references)
    unknown = set(geo.unknown_references(set(references))) if references else set()
    if not unknown:
        return
    for row in rows:
        for column, spec in (("antenne_zone", row.antenne_zone), ("expert_zone", row.expert_zone)):
            for kind, code in spec.references if spec else ():
                if f"{kind}:{code}" in unknown:
                    report.error(row.line, f"{column} : territoire inconnu « {kind}:{code} »")
